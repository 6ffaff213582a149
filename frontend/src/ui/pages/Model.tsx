// The model page: its name and rendered description (the server sanitises the HTML), its
// versions with their aliases, and the candidates table. A maintainer may delete the
// model: the deletion runs as a job, whose progress shows here until it finished; then
// the project page opens.

import { useState, type ReactNode } from "react";

import { request, RequestError, useQuery } from "../api";
import { Link, navigate, paths } from "../router";
import { CandidatesTable, formatTime, type CandidateKeys } from "../components/CandidatesTable";
import { JobProgress, type JobStatus } from "../components/JobProgress";
import modelPage from "../operations/ModelPage.graphql?raw";
import modelDelete from "../operations/ModelDelete.graphql?raw";
import "./Model.css";

const LEAVE_AFTER_MS = 1000;

interface ModelVersionRow {
  id: string;
  number: number;
  version: string;
  stage: string;
  aliases: string[];
  createdAt: string;
  webPath: string;
}

interface ModelPageData {
  project: {
    id: string;
    path: string;
    webPath: string;
    model: {
      id: string;
      name: string;
      displayName: string;
      descriptionHtml: string | null;
      candidateCount: number;
      versionCount: number;
      userPermissions: { deleteModel: boolean; createVersion: boolean; manageAliases: boolean };
      candidateKeys: CandidateKeys;
      versions: { totalCount: number; edges: { node: ModelVersionRow }[] } | null;
    } | null;
  } | null;
}

type ModelDeleteData = {
  modelDelete:
    | { __typename: "JobStarted"; job: { id: string } }
    | { __typename: "ValidationError" | "NotFoundError" | "PermissionError"; message: string };
};

export function ModelPage(props: { project: string; model: string }): ReactNode {
  const { data, error, loading } = useQuery<ModelPageData>(modelPage, props);
  const model = data?.project?.model ?? null;
  if (error && !model) return <p className="alert">{error.message}</p>;
  if (loading && !model) return <p className="muted">Loading…</p>;
  if (!model) {
    return (
      <p className="alert" data-testid="model-missing">
        Model {props.model} was not found in {props.project}.
      </p>
    );
  }
  const versions = model.versions?.edges.map((edge) => edge.node) ?? [];
  return (
    <div className="model-page" data-testid="model-page">
      <div className="page-header">
        <div>
          <h1 data-testid="model-name">{model.displayName}</h1>
          <span className="muted">
            <code>{model.name}</code> · {count(model.candidateCount, "candidate")} ·{" "}
            {count(model.versionCount, "version")}
          </span>
        </div>
        {model.userPermissions.deleteModel && <DeleteModel project={props.project} model={model} />}
      </div>
      {model.descriptionHtml && (
        <div
          className="card model-description"
          data-testid="model-description"
          dangerouslySetInnerHTML={{ __html: model.descriptionHtml }}
        />
      )}
      <section className="card">
        <h2>Versions</h2>
        {versions.length === 0 ? (
          <p className="muted">No versions yet: promote a candidate below.</p>
        ) : (
          <ul className="model-versions" data-testid="model-versions">
            {versions.map((version) => (
              <li key={version.id} data-testid="model-version">
                <Link to={paths.version(props.project, model.name, version.version)}>{version.version}</Link>
                <span className="muted small">#{version.number}</span>
                {version.aliases.map((alias) => (
                  <span key={alias} className="badge info" data-testid="version-alias">
                    @{alias}
                  </span>
                ))}
                {version.stage !== "NONE" && <span className="badge">{version.stage.toLowerCase()}</span>}
                <span className="muted small">{formatTime(version.createdAt)}</span>
              </li>
            ))}
          </ul>
        )}
        {model.versions && model.versions.totalCount > versions.length && (
          <p className="muted small">
            The newest {versions.length} of {model.versions.totalCount} versions.
          </p>
        )}
      </section>
      <section className="card">
        <h2>Candidates</h2>
        <CandidatesTable
          project={props.project}
          model={model.name}
          modelId={model.id}
          keys={model.candidateKeys}
          canPromote={model.userPermissions.createVersion}
          canSetAlias={model.userPermissions.manageAliases}
        />
      </section>
    </div>
  );
}

function count(value: number, noun: string): string {
  return `${value} ${noun}${value === 1 ? "" : "s"}`;
}

function DeleteModel(props: { project: string; model: { id: string; name: string } }): ReactNode {
  const [confirming, setConfirming] = useState(false);
  const [jobId, setJobId] = useState<string | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const finished = (status: JobStatus): void => {
    // A moment to see the job succeed before the project page replaces this one; a
    // failed job stays, with its error.
    if (status === "SUCCEEDED") {
      window.setTimeout(() => navigate(paths.project(props.project)), LEAVE_AFTER_MS);
    }
  };
  const remove = async (): Promise<void> => {
    setFailure(null);
    try {
      const answer = (await request<ModelDeleteData>(modelDelete, { id: props.model.id })).modelDelete;
      if (answer.__typename === "JobStarted") setJobId(answer.job.id);
      else setFailure(answer.message);
    } catch (error) {
      setFailure(error instanceof RequestError ? error.message : String(error));
    }
  };
  if (jobId !== null) {
    return (
      <div className="model-delete" data-testid="model-delete-job">
        <JobProgress jobId={jobId} onFinished={finished} />
      </div>
    );
  }
  return (
    <div className="model-delete">
      {confirming ? (
        <>
          <span>Delete {props.model.name} with all its candidates and versions?</span>
          <button type="button" className="danger" data-testid="model-delete-confirm" onClick={() => void remove()}>
            Delete
          </button>
          <button type="button" onClick={() => setConfirming(false)}>
            Cancel
          </button>
        </>
      ) : (
        <button type="button" className="danger" data-testid="model-delete" onClick={() => setConfirming(true)}>
          Delete model
        </button>
      )}
      {failure && (
        <span className="error" role="alert">
          {failure}
        </span>
      )}
    </div>
  );
}
