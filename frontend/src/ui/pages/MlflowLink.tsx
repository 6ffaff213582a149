// Where the links an MLflow client prints land (`<tracking URI>/#/...`): the hash names
// an MLflow object, GraphQL finds ours, and the page is replaced by that object's page.
//
// - `#/experiments/<id>`: the model whose iid is the experiment id;
// - `#/experiments/<id>/runs/<run id>`: the candidate of that run;
// - `#/models/<name>`, `#/models/<name>/versions/<n>`: the model whose display name is
//   the registered model name, and its version number n.
//
// The project is the tracking URI's (`/projects/<path>/mlflow`), else the workspace the
// link names (`?workspace=<name>` after the hash, as clients with a workspace set print
// it: a workspace is a project), else the default one.
// The tracking URI itself, with no hash, opens its project.

import { useEffect, type ReactNode } from "react";

import { useQuery } from "../api";
import { Missing, QueryStatus } from "../components/QueryStatus";
import mlflowLinkExperiment from "../operations/MlflowLinkExperiment.graphql?raw";
import mlflowLinkModel from "../operations/MlflowLinkModel.graphql?raw";
import mlflowLinkRun from "../operations/MlflowLinkRun.graphql?raw";
import mlflowLinkVersion from "../operations/MlflowLinkVersion.graphql?raw";
import { navigate, paths } from "../router";
import { NotFoundPage } from "./NotFound";

export const DEFAULT_PROJECT = "default";

type MlflowTarget =
  | { kind: "experiment"; iid: number }
  | { kind: "run"; runId: string }
  | { kind: "model"; name: string }
  | { kind: "version"; name: string; number: number };

/** What a hash names ("#/experiments/1/runs/abc?workspace=…"), or null. */
export function parseMlflowHash(hash: string): MlflowTarget | null {
  const path = hash.replace(/^#/, "").split("?")[0];
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "experiments" && /^\d+$/.test(parts[1] ?? "")) {
    if (parts.length === 2) return { kind: "experiment", iid: Number(parts[1]) };
    if (parts.length === 4 && parts[2] === "runs") return { kind: "run", runId: parts[3] };
  }
  if (parts[0] === "models" && parts.length >= 2) {
    if (parts.length === 2) return { kind: "model", name: parts[1] };
    if (parts.length === 4 && parts[2] === "versions" && /^\d+$/.test(parts[3])) {
      return { kind: "version", name: parts[1], number: Number(parts[3]) };
    }
  }
  return null;
}

/** The workspace a hash names (`#/experiments/1?workspace=team-a`), or null. */
export function linkedWorkspace(hash: string): string | null {
  const query = hash.split("?")[1];
  return query === undefined ? null : new URLSearchParams(query).get("workspace") || null;
}

interface ModelData {
  project: { id: string; model: { id: string; name: string } | null } | null;
}
interface RunData {
  project: {
    id: string;
    candidate: { id: string; iid: number; model: { id: string; name: string } } | null;
  } | null;
}
interface VersionData {
  project: {
    id: string;
    model: { id: string; name: string; version: { id: string; version: string } | null } | null;
  } | null;
}

export function MlflowLinkPage(props: { project: string | null; hash: string }): ReactNode {
  const project = props.project ?? linkedWorkspace(props.hash) ?? DEFAULT_PROJECT;
  const target = parseMlflowHash(props.hash);
  if (target === null) {
    // The tracking URI itself: its project.
    const bare = ["", "#", "#/"].includes(props.hash);
    return bare ? <Redirect to={paths.project(project)} /> : <NotFoundPage />;
  }
  const toModel = (data: ModelData): string | null =>
    data.project?.model ? paths.model(project, data.project.model.name) : null;
  switch (target.kind) {
    case "experiment":
      return (
        <Resolve<ModelData>
          document={mlflowLinkExperiment}
          variables={{ path: project, iid: target.iid }}
          to={toModel}
        />
      );
    case "model":
      return (
        <Resolve<ModelData>
          document={mlflowLinkModel}
          variables={{ path: project, name: target.name }}
          to={toModel}
        />
      );
    case "run":
      return (
        <Resolve<RunData>
          document={mlflowLinkRun}
          variables={{ path: project, runId: target.runId }}
          to={(data) => {
            const candidate = data.project?.candidate;
            return candidate ? paths.candidate(project, candidate.model.name, candidate.iid) : null;
          }}
        />
      );
    case "version":
      return (
        <Resolve<VersionData>
          document={mlflowLinkVersion}
          variables={{ path: project, name: target.name, number: target.number }}
          to={(data) => {
            const model = data.project?.model;
            return model?.version ? paths.version(project, model.name, model.version.version) : null;
          }}
        />
      );
  }
}

function Redirect(props: { to: string }): ReactNode {
  useEffect(() => navigate(props.to, { replace: true }), [props.to]);
  return <p className="muted">Opening…</p>;
}

/** Runs `document`; replaces the address with the page `to` finds in its answer. */
function Resolve<T>(props: {
  document: string;
  variables: Record<string, unknown>;
  to: (data: T) => string | null;
}): ReactNode {
  const query = useQuery<T>(props.document, props.variables);
  const destination = query.data ? props.to(query.data) : null;
  useEffect(() => {
    if (destination) navigate(destination, { replace: true });
  }, [destination]);
  if (!query.data) return <QueryStatus state={query} />;
  return destination ? <p className="muted">Opening…</p> : <Missing />;
}
