// The projects the viewer may read (public ones for everyone), with their role in each.

import type { ReactNode } from "react";

import { useQuery } from "../api";
import { QueryStatus } from "../components/QueryStatus";
import projectsList from "../operations/ProjectsList.graphql?raw";
import { Link, paths } from "../router";

interface ProjectsListData {
  projects: {
    id: string;
    path: string;
    name: string;
    description: string | null;
    visibility: "PUBLIC" | "PRIVATE";
    viewerRole: string | null;
  }[];
}

export function roleLabel(role: string | null): string {
  return role ? role.charAt(0) + role.slice(1).toLowerCase() : "—";
}

export function ProjectsPage(): ReactNode {
  const query = useQuery<ProjectsListData>(projectsList);
  if (!query.data) return <QueryStatus state={query} />;
  const projects = query.data.projects;
  return (
    <>
      <div className="page-header">
        <h1>Projects</h1>
      </div>
      {projects.length === 0 ? (
        <p className="muted">No project to show: sign in to see yours.</p>
      ) : (
        <table className="table" data-testid="projects-table">
          <thead>
            <tr>
              <th>Project</th>
              <th>Description</th>
              <th>Visibility</th>
              <th>Your role</th>
            </tr>
          </thead>
          <tbody>
            {projects.map((project) => (
              <tr key={project.id} data-testid="project-row">
                <td>
                  <Link to={paths.project(project.path)}>{project.name}</Link>
                  {project.name !== project.path ? (
                    <div className="muted small">{project.path}</div>
                  ) : null}
                </td>
                <td className="muted">{project.description ?? ""}</td>
                <td>
                  <span className={project.visibility === "PUBLIC" ? "badge info" : "badge"}>
                    {project.visibility === "PUBLIC" ? "Public" : "Private"}
                  </span>
                </td>
                <td>{roleLabel(project.viewerRole)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
