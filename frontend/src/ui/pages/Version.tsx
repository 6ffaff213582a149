// A version of a model: its semver and number, description, aliases, stage, the files
// (each downloaded through its URL with the session cookie), where it came from (source,
// and the candidate it was promoted from), its signature and flavors, and the line that
// loads it with MLflow: by its first alias, or by its number when it has none.

import { useState, type ReactNode } from "react";

import { useQuery } from "../api";
import { Link, paths } from "../router";
import { formatTime } from "../components/CandidatesTable";
import versionPage from "../operations/VersionPage.graphql?raw";
import "./Version.css";

interface VersionFile {
  id: string;
  path: string;
  size: number;
  sha256: string | null;
  downloadUrl: string;
}

interface VersionPageData {
  project: {
    id: string;
    model: {
      id: string;
      name: string;
      displayName: string;
      webPath: string;
      version: {
        id: string;
        number: number;
        version: string;
        descriptionHtml: string | null;
        stage: string;
        source: string | null;
        createdAt: string;
        aliases: string[];
        signature: unknown;
        flavors: { name: string; version: string | null }[];
        candidate: { id: string; iid: number; eid: string; name: string; webPath: string };
        files: { totalCount: number; edges: { node: VersionFile }[] } | null;
      } | null;
    } | null;
  } | null;
}

export function VersionPage(props: { project: string; model: string; version: string }): ReactNode {
  const { data, error, loading } = useQuery<VersionPageData>(versionPage, props);
  const model = data?.project?.model ?? null;
  const version = model?.version ?? null;
  if (error && !data) return <p className="alert">{error.message}</p>;
  if (loading && !data) return <p className="muted">Loading…</p>;
  if (!model || !version) {
    return (
      <p className="alert" data-testid="version-missing">
        Version {props.version} of {props.model} was not found in {props.project}.
      </p>
    );
  }
  const files = version.files?.edges.map((edge) => edge.node) ?? [];
  const reference = version.aliases.length > 0 ? `@${version.aliases[0]}` : `/${version.number}`;
  const snippet = `mlflow.pyfunc.load_model("models:/${model.name}${reference}")`;
  return (
    <div className="version-page" data-testid="version-page">
      <div className="page-header">
        <div>
          <h1>
            {model.displayName} <span data-testid="version-semver">{version.version}</span>
          </h1>
          <span className="muted">
            version #{version.number} · {formatTime(version.createdAt)}
          </span>
        </div>
        <div className="row">
          {version.aliases.map((alias) => (
            <span key={alias} className="badge info" data-testid="version-alias">
              @{alias}
            </span>
          ))}
          {version.stage !== "NONE" && <span className="badge">{version.stage.toLowerCase()}</span>}
        </div>
      </div>
      {version.descriptionHtml && (
        <div
          className="card version-description"
          data-testid="version-description"
          dangerouslySetInnerHTML={{ __html: version.descriptionHtml }}
        />
      )}
      <section className="card">
        <h2>Load it</h2>
        <CopyableSnippet text={snippet} />
      </section>
      <section className="card">
        <h2>Files</h2>
        {files.length === 0 ? (
          <p className="muted">No files.</p>
        ) : (
          <table className="table" data-testid="version-files">
            <thead>
              <tr>
                <th>Path</th>
                <th className="number">Size</th>
                <th>SHA-256</th>
              </tr>
            </thead>
            <tbody>
              {files.map((file) => (
                <tr key={file.id} data-testid="version-file">
                  <td>
                    <a href={file.downloadUrl} download data-testid="version-file-download">
                      {file.path}
                    </a>
                  </td>
                  <td className="number">{formatSize(file.size)}</td>
                  <td>
                    <code className="small" title={file.sha256 ?? undefined}>
                      {file.sha256 ? file.sha256.slice(0, 12) : "—"}
                    </code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {version.files && version.files.totalCount > files.length && (
          <p className="muted small">
            The first {files.length} of {version.files.totalCount} files.
          </p>
        )}
      </section>
      <section className="card">
        <h2>Lineage</h2>
        <dl className="version-facts">
          <dt>Candidate</dt>
          <dd>
            <Link to={paths.candidate(props.project, model.name, version.candidate.iid)}>
              <span data-testid="version-candidate">{version.candidate.name}</span>
            </Link>{" "}
            <span className="muted small">run {version.candidate.eid}</span>
          </dd>
          <dt>Source</dt>
          <dd>
            <code data-testid="version-source">{version.source ?? "—"}</code>
          </dd>
          <dt>Flavors</dt>
          <dd data-testid="version-flavors">
            {version.flavors.length === 0
              ? "—"
              : version.flavors.map((flavor) => (
                  <span key={flavor.name} className="badge">
                    {flavor.name}
                    {flavor.version ? ` ${flavor.version}` : ""}
                  </span>
                ))}
          </dd>
        </dl>
      </section>
      {version.signature != null && (
        <section className="card">
          <h2>Signature</h2>
          <pre data-testid="version-signature">{JSON.stringify(version.signature, null, 2)}</pre>
        </section>
      )}
    </div>
  );
}

function CopyableSnippet(props: { text: string }): ReactNode {
  const [copied, setCopied] = useState<boolean | null>(null);
  const copy = (): void => {
    navigator.clipboard.writeText(props.text).then(
      () => setCopied(true),
      () => setCopied(false),
    );
  };
  return (
    <div className="snippet">
      <pre data-testid="version-snippet">{props.text}</pre>
      <button type="button" data-testid="version-snippet-copy" onClick={copy}>
        {copied === true ? "Copied" : "Copy"}
      </button>
      {copied === false && <span className="muted small">Select the line to copy it.</span>}
    </div>
  );
}

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
