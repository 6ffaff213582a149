// The frame around every page: the header bar (home, where you are, GraphiQL, who you
// are with their menu: access tokens, sign out) and the page below it.

import { useEffect, useRef, useState, type ReactNode } from "react";

import { currentPath, Link, navigate, paths, type Route } from "../router";
import { csrfHeaders } from "../../shared/session";
import { useViewer } from "./Viewer";
import "./Frame.css";

export function Frame(props: { route: Route; children: ReactNode }): ReactNode {
  return (
    <>
      <header className="frame-header" data-testid="frame-header">
        <Link to={paths.projects()} className="frame-brand">
          modelreg
        </Link>
        <Breadcrumb route={props.route} />
        <nav className="frame-end">
          <a href="/graphql" className="frame-link">
            GraphiQL
          </a>
          <ViewerMenu signingIn={props.route.page === "signIn"} />
        </nav>
      </header>
      <main className="page">{props.children}</main>
    </>
  );
}

function Breadcrumb(props: { route: Route }): ReactNode {
  const route = props.route;
  const crumbs: { label: string; to: string | null }[] = [];
  if ("project" in route && route.project !== null) {
    crumbs.push({ label: route.project, to: paths.project(route.project) });
    if ("model" in route) {
      crumbs.push({ label: route.model, to: paths.model(route.project, route.model) });
      if (route.page === "version") crumbs.push({ label: `Version ${route.version}`, to: null });
      if (route.page === "candidate") crumbs.push({ label: `Candidate ${route.iid}`, to: null });
    }
    if (route.page === "members") crumbs.push({ label: "Members", to: null });
    if (route.page === "jobs") crumbs.push({ label: "Jobs", to: null });
    if (route.page === "compare") crumbs.push({ label: "Compare", to: null });
  }
  if (route.page === "tokens") crumbs.push({ label: "Access tokens", to: null });
  if (route.page === "signIn") crumbs.push({ label: "Sign in", to: null });
  return (
    <ol className="frame-breadcrumb" data-testid="breadcrumb">
      {crumbs.map((crumb, index) => (
        <li key={index}>
          {crumb.to ? <Link to={crumb.to}>{crumb.label}</Link> : <span>{crumb.label}</span>}
        </li>
      ))}
    </ol>
  );
}

function ViewerMenu(props: { signingIn: boolean }): ReactNode {
  const viewer = useViewer();
  const [open, setOpen] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const menu = useRef<HTMLDivElement>(null);
  // Following a link of the menu closes it.
  const here = currentPath();
  useEffect(() => setOpen(false), [here]);
  useEffect(() => {
    if (!open) return undefined;
    const close = (event: MouseEvent): void => {
      if (!menu.current?.contains(event.target as Node)) setOpen(false);
    };
    document.addEventListener("mousedown", close);
    return () => document.removeEventListener("mousedown", close);
  }, [open]);
  if (viewer.loading) return null;
  if (viewer.user === null) {
    return props.signingIn ? null : (
      <Link to={paths.signIn()} className="frame-link" testId="sign-in-link">
        Sign in
      </Link>
    );
  }
  const signOut = async (): Promise<void> => {
    const response = await fetch("/sign-out", {
      method: "POST",
      credentials: "same-origin",
      headers: csrfHeaders(),
    });
    if (!response.ok) {
      setError(`Signing out failed (${response.status})`);
      return;
    }
    setOpen(false);
    viewer.refetch();
    navigate(paths.projects());
  };
  return (
    <div className="frame-menu" ref={menu}>
      <button
        type="button"
        className="frame-menu-button"
        data-testid="viewer-menu"
        aria-expanded={open}
        onClick={() => setOpen(!open)}
      >
        <span className="frame-avatar">{viewer.user.username.charAt(0).toUpperCase()}</span>
        <span data-testid="viewer-username">{viewer.user.username}</span>
      </button>
      {open ? (
        <div className="frame-menu-items" role="menu">
          <div className="frame-menu-who muted small">
            Signed in as <strong>{viewer.user.name ?? viewer.user.username}</strong>
          </div>
          <Link to={paths.tokens()} testId="menu-tokens">
            Access tokens
          </Link>
          <button type="button" className="link" data-testid="sign-out" onClick={() => void signOut()}>
            Sign out
          </button>
          {error ? <span className="error">{error}</span> : null}
        </div>
      ) : null}
    </div>
  );
}
