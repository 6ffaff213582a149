// The UI's addresses. Pages live at the paths the server names in `webPath`
// (app/web_paths.py, GitLab's layout: `/-/` between a project and what it holds); pages
// that belong to no project live under `/-/`. Navigation is client-side (History API):
// `navigate` and `<Link>` change the address, `useRoute` re-renders on every change.

import { useSyncExternalStore, type MouseEvent, type ReactNode } from "react";

export type Route =
  | { page: "projects" }
  | { page: "signIn"; next: string }
  | { page: "tokens" }
  | { page: "project"; project: string }
  | { page: "members"; project: string }
  // `job`: a job to follow at the top (a deletion just started elsewhere).
  | { page: "jobs"; project: string; job: string | null }
  | { page: "model"; project: string; model: string }
  | { page: "version"; project: string; model: string; version: string }
  | { page: "candidate"; project: string; model: string; iid: number }
  | { page: "compare"; project: string; ids: string[] }
  // A link an MLflow client printed: `<tracking URI>/#/experiments/...`; `project` is
  // set when the tracking URI was a project's (`/projects/<path>/mlflow`), whose own
  // address (no hash) lands here too.
  | { page: "mlflowLink"; project: string | null; hash: string }
  | { page: "notFound" };

const enc = encodeURIComponent;

export const paths = {
  projects: (): string => "/",
  signIn: (next: string = currentPath()): string => `/-/sign-in?next=${enc(next)}`,
  tokens: (): string => "/-/tokens",
  project: (project: string): string => `/${project.split("/").map(enc).join("/")}`,
  members: (project: string): string => `${paths.project(project)}/-/members`,
  jobs: (project: string, job: string | null = null): string =>
    `${paths.project(project)}/-/jobs${job ? `?job=${enc(job)}` : ""}`,
  model: (project: string, model: string): string =>
    `${paths.project(project)}/-/models/${enc(model)}`,
  version: (project: string, model: string, version: string): string =>
    `${paths.model(project, model)}/versions/${enc(version)}`,
  candidate: (project: string, model: string, iid: number): string =>
    `${paths.model(project, model)}/candidates/${iid}`,
  compare: (project: string, ids: string[]): string =>
    `${paths.project(project)}/-/compare?candidates=${ids.map(enc).join(",")}`,
};

const MLFLOW_PREFIX = /^\/projects\/(.+)\/mlflow\/?$/;

export function parseLocation(pathname: string, search: string, hash: string): Route {
  const query = new URLSearchParams(search);
  const prefixed = MLFLOW_PREFIX.exec(pathname);
  if (prefixed) return { page: "mlflowLink", project: decode(prefixed[1]), hash };
  if (hash.startsWith("#/") && pathname === "/") {
    return { page: "mlflowLink", project: null, hash };
  }
  if (pathname === "/") return { page: "projects" };
  if (pathname === "/-/sign-in") return { page: "signIn", next: localPath(query.get("next")) };
  if (pathname === "/-/tokens") return { page: "tokens" };
  if (pathname.startsWith("/-/")) return { page: "notFound" };
  const [projectPart, rest = null] = splitOnce(pathname.slice(1).replace(/\/$/, ""), "/-/");
  const project = projectPart.split("/").map(decode).join("/");
  if (!project) return { page: "notFound" };
  if (rest === null) return { page: "project", project };
  if (rest === "members") return { page: "members", project };
  if (rest === "jobs") return { page: "jobs", project, job: query.get("job") };
  if (rest === "compare") {
    const ids = (query.get("candidates") ?? "").split(",").filter(Boolean);
    return { page: "compare", project, ids };
  }
  const parts = rest.split("/").map(decode);
  if (parts[0] !== "models" || parts.length < 2) return { page: "notFound" };
  const model = parts[1];
  if (parts.length === 2) return { page: "model", project, model };
  if (parts.length === 4 && parts[2] === "versions") {
    return { page: "version", project, model, version: parts[3] };
  }
  if (parts.length === 4 && parts[2] === "candidates" && /^\d+$/.test(parts[3])) {
    return { page: "candidate", project, model, iid: Number(parts[3]) };
  }
  return { page: "notFound" };
}

function splitOnce(text: string, separator: string): [string, string | null] {
  const at = text.indexOf(separator);
  return at < 0 ? [text, null] : [text.slice(0, at), text.slice(at + separator.length)];
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** `next` only ever leads to a path of this server (one leading "/"). */
function localPath(next: string | null): string {
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

export function currentPath(): string {
  return window.location.pathname + window.location.search + window.location.hash;
}

const listeners = new Set<() => void>();
window.addEventListener("popstate", () => listeners.forEach((listener) => listener()));

function subscribeToLocation(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (options.replace) window.history.replaceState(null, "", to);
  else window.history.pushState(null, "", to);
  window.scrollTo(0, 0);
  listeners.forEach((listener) => listener());
}

export function useRoute(): Route {
  const location = useSyncExternalStore(subscribeToLocation, currentPath);
  const url = new URL(location, window.location.origin);
  return parseLocation(url.pathname, url.search, url.hash);
}

export function Link(props: {
  to: string;
  children: ReactNode;
  className?: string;
  title?: string;
  testId?: string;
}): ReactNode {
  const follow = (event: MouseEvent<HTMLAnchorElement>): void => {
    // A modified click (new tab, new window) is the browser's own.
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    event.preventDefault();
    navigate(props.to);
  };
  return (
    <a
      href={props.to}
      onClick={follow}
      className={props.className}
      title={props.title}
      data-testid={props.testId}
    >
      {props.children}
    </a>
  );
}
