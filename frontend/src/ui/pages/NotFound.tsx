// An address the UI has no page for, or an object that does not exist (or is hidden).

import type { ReactNode } from "react";

import { Link, paths } from "../router";

export function NotFoundPage(): ReactNode {
  return (
    <div className="card" data-testid="not-found">
      <h1>Page not found</h1>
      <p className="muted">Nothing is here, or you may not see it.</p>
      <Link to={paths.projects()}>Back to your projects</Link>
    </div>
  );
}
