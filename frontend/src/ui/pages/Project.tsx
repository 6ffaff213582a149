// A project's models: searched by name, ordered by name, last update or latest version,
// a page of PAGE_SIZE at a time (cursor paging), each with its latest version and how
// many versions and candidates it has.

import { useState, type ReactNode } from "react";

import { useQuery } from "../api";
import { formatCount, formatDateTime } from "../components/format";
import { ProjectTabs } from "../components/ProjectTabs";
import { Missing, QueryStatus } from "../components/QueryStatus";
import projectModels from "../operations/ProjectModels.graphql?raw";
import { Link, paths } from "../router";
import "./Project.css";

export const PAGE_SIZE = 20;

type ModelOrderField = "NAME" | "UPDATED_AT" | "LATEST_VERSION";
type Direction = "ASC" | "DESC";

interface ModelRow {
  id: string;
  name: string;
  displayName: string;
  updatedAt: string;
  versionCount: number;
  candidateCount: number;
  latestVersion: { id: string; version: string; aliases: string[] } | null;
}

interface ProjectModelsData {
  project: {
    id: string;
    path: string;
    name: string;
    description: string | null;
    visibility: "PUBLIC" | "PRIVATE";
    models: {
      totalCount: number;
      pageInfo: {
        hasNextPage: boolean;
        hasPreviousPage: boolean;
        startCursor: string | null;
        endCursor: string | null;
      };
      edges: { node: ModelRow }[];
    } | null;
  } | null;
}

// Where a page starts: the first page, after a cursor, or before one (going back).
type PageStart = { after: string } | { before: string } | null;

const SORTS: { field: ModelOrderField; label: string; direction: Direction }[] = [
  { field: "NAME", label: "Name", direction: "ASC" },
  { field: "UPDATED_AT", label: "Last updated", direction: "DESC" },
  { field: "LATEST_VERSION", label: "Latest version", direction: "DESC" },
];

export function ProjectPage(props: { project: string }): ReactNode {
  const [search, setSearch] = useState("");
  const [field, setField] = useState<ModelOrderField>("NAME");
  const [direction, setDirection] = useState<Direction>("ASC");
  const [start, setStart] = useState<PageStart>(null);
  const pageWindow =
    start === null
      ? { first: PAGE_SIZE }
      : "after" in start
        ? { first: PAGE_SIZE, after: start.after }
        : { last: PAGE_SIZE, before: start.before };
  const query = useQuery<ProjectModelsData>(projectModels, {
    path: props.project,
    search: search.trim() || null,
    orderBy: { field, direction },
    ...pageWindow,
  });
  if (!query.data) return <QueryStatus state={query} />;
  const project = query.data.project;
  if (project === null) return <Missing />;
  const models = project.models;
  // Going forward, the API may not know whether a page lies before this one.
  const hasPrevious =
    models !== null &&
    (models.pageInfo.hasPreviousPage || (start !== null && "after" in start));

  const sortBy = (next: ModelOrderField): void => {
    setField(next);
    setDirection(SORTS.find((sort) => sort.field === next)?.direction ?? "ASC");
    setStart(null);
  };

  return (
    <>
      <div className="page-header">
        <div>
          <h1 data-testid="project-name">{project.name}</h1>
          {project.description ? <p className="muted">{project.description}</p> : null}
        </div>
        <span className={project.visibility === "PUBLIC" ? "badge info" : "badge"}>
          {project.visibility === "PUBLIC" ? "Public" : "Private"}
        </span>
      </div>
      <ProjectTabs project={project.path} current="models" />
      <div className="row project-toolbar">
        <input
          type="search"
          placeholder="Search models"
          aria-label="Search models"
          value={search}
          onChange={(event) => {
            setSearch(event.target.value);
            setStart(null);
          }}
          data-testid="models-search"
        />
        <label className="row">
          <span className="muted">Sort by</span>
          <select
            value={field}
            onChange={(event) => sortBy(event.target.value as ModelOrderField)}
            data-testid="models-sort"
          >
            {SORTS.map((sort) => (
              <option key={sort.field} value={sort.field}>
                {sort.label}
              </option>
            ))}
          </select>
        </label>
        <button
          type="button"
          onClick={() => {
            setDirection(direction === "ASC" ? "DESC" : "ASC");
            setStart(null);
          }}
          title="Reverse the order"
          data-testid="models-direction"
        >
          {direction === "ASC" ? "↑ Ascending" : "↓ Descending"}
        </button>
        {models ? (
          <span className="muted" data-testid="models-count">
            {formatCount(models.totalCount)} {models.totalCount === 1 ? "model" : "models"}
          </span>
        ) : null}
      </div>
      {models === null ? (
        <p className="alert">The models could not be listed.</p>
      ) : models.edges.length === 0 ? (
        <p className="muted" data-testid="models-empty">
          {search ? "No model matches the search." : "This project has no models yet."}
        </p>
      ) : (
        <table className="table" data-testid="models-table">
          <thead>
            <tr>
              <th>Model</th>
              <th>Latest version</th>
              <th className="number">Versions</th>
              <th className="number">Candidates</th>
              <th>Updated</th>
            </tr>
          </thead>
          <tbody>
            {models.edges.map(({ node }) => (
              <tr key={node.id} data-testid="model-row">
                <td>
                  <Link to={paths.model(project.path, node.name)} testId="model-link">
                    {node.displayName}
                  </Link>
                  {node.displayName !== node.name ? (
                    <div className="muted small">{node.name}</div>
                  ) : null}
                </td>
                <td data-testid="model-latest-version">
                  {node.latestVersion ? (
                    <span className="row">
                      <Link to={paths.version(project.path, node.name, node.latestVersion.version)}>
                        {node.latestVersion.version}
                      </Link>
                      {node.latestVersion.aliases.map((alias) => (
                        <span key={alias} className="badge info">
                          @{alias}
                        </span>
                      ))}
                    </span>
                  ) : (
                    <span className="muted">—</span>
                  )}
                </td>
                <td className="number" data-testid="model-versions">
                  {formatCount(node.versionCount)}
                </td>
                <td className="number" data-testid="model-candidates">
                  {formatCount(node.candidateCount)}
                </td>
                <td className="muted">{formatDateTime(node.updatedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {models && (hasPrevious || models.pageInfo.hasNextPage) ? (
        <div className="row project-pager">
          <button
            type="button"
            disabled={!hasPrevious || !models.pageInfo.startCursor}
            onClick={() => setStart({ before: models.pageInfo.startCursor ?? "" })}
            data-testid="models-previous"
          >
            Previous
          </button>
          <button
            type="button"
            disabled={!models.pageInfo.hasNextPage || !models.pageInfo.endCursor}
            onClick={() => setStart({ after: models.pageInfo.endCursor ?? "" })}
            data-testid="models-next"
          >
            Next
          </button>
        </div>
      ) : null}
    </>
  );
}
