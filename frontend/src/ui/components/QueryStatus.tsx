// What a page shows before its query answered: "Loading…", the request's error, or (for
// an anonymous visitor the API refused, or who looks for what only members see) the way
// to the sign-in page.

import { useEffect, type ReactNode } from "react";

import type { QueryState } from "../api";
import { NotFoundPage } from "../pages/NotFound";
import { currentPath, navigate, paths } from "../router";
import { useViewer } from "./Viewer";

export function QueryStatus<T>(props: { state: QueryState<T> }): ReactNode {
  const error = props.state.error;
  if (error?.code === "UNAUTHENTICATED") return <SignInRedirect />;
  if (error) {
    return (
      <p className="alert" data-testid="query-error">
        {error.message}
      </p>
    );
  }
  return <p className="muted">Loading…</p>;
}

/** A project or object the API did not find: not found for someone signed in, the
 * sign-in page for an anonymous visitor (it may be private). */
export function Missing(): ReactNode {
  const viewer = useViewer();
  if (viewer.loading) return <p className="muted">Loading…</p>;
  return viewer.user === null ? <SignInRedirect /> : <NotFoundPage />;
}

function SignInRedirect(): ReactNode {
  useEffect(() => navigate(paths.signIn(currentPath()), { replace: true }), []);
  return <p className="muted">Sign in to see this page.</p>;
}
