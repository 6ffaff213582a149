// The tabs of a project's pages: its models, its jobs, its members.

import type { ReactNode } from "react";

import { Link, paths } from "../router";

export function ProjectTabs(props: {
  project: string;
  current: "models" | "jobs" | "members";
}): ReactNode {
  const tabs = [
    { key: "models", label: "Models", to: paths.project(props.project) },
    { key: "jobs", label: "Jobs", to: paths.jobs(props.project) },
    { key: "members", label: "Members", to: paths.members(props.project) },
  ] as const;
  return (
    <nav className="tabs">
      {tabs.map((tab) => (
        <Link key={tab.key} to={tab.to} className={tab.key === props.current ? "current" : ""}>
          {tab.label}
        </Link>
      ))}
    </nav>
  );
}
