// A candidate (an MLflow run): its status and times, params, latest metrics, charts of
// the chosen metrics' histories, artifacts, dataset inputs, logged models, parent and
// child runs, the version it became and its tags.
//
// Two queries: CandidatePage for everything but the histories, CandidateCharts for the
// histories of the chosen metrics (at most MAX_POINTS per series, downsampled by the
// server; a drag across a chart asks for that step range at full resolution). While the
// candidate runs, the CandidateUpdated subscription brings its status and each metric
// value as it is logged: the value joins the metrics table and its chart at once.

import { useCallback, useEffect, useMemo, useState, type ReactNode } from "react";

import { useQuery, useSubscription } from "../api";
import { Link } from "../router";
import { ArtifactsTree, formatSize } from "../components/ArtifactsTree";
import { Chart, type ChartSeries, type ChartValue } from "../components/Chart";
import candidateCharts from "../operations/CandidateCharts.graphql?raw";
import candidatePage from "../operations/CandidatePage.graphql?raw";
import candidateUpdated from "../operations/CandidateUpdated.graphql?raw";
import "./Candidate.css";

/** Points per series the charts ask for; the server keeps the first and last step. */
export const MAX_POINTS = 1000;
/** Charts shown before the user chooses: the first metrics by name. */
const DEFAULT_CHARTS = 6;

type CandidateStatus = "RUNNING" | "SCHEDULED" | "FINISHED" | "FAILED" | "KILLED";
type MetricValueKind = "FINITE" | "NAN" | "POSITIVE_INFINITY" | "NEGATIVE_INFINITY";

interface KeyValue {
  name: string;
  value: string;
}

interface MetricPoint {
  name: string;
  value: number | null;
  kind: MetricValueKind;
  step: number;
  timestamp: string;
}

interface CandidateLink {
  id: string;
  iid: number;
  name: string;
  status: CandidateStatus;
  webPath: string;
}

interface CandidateData {
  id: string;
  iid: number;
  eid: string;
  name: string;
  status: CandidateStatus;
  startTime: string | null;
  endTime: string | null;
  createdAt: string;
  deleted: boolean;
  webPath: string;
  author: { id: string; username: string; name: string | null } | null;
  model: { id: string; name: string; displayName: string; webPath: string };
  params: KeyValue[];
  metadata: KeyValue[];
  metrics: MetricPoint[];
  inputs: {
    name: string;
    digest: string | null;
    sourceType: string | null;
    source: string | null;
    context: string | null;
  }[];
  parent: CandidateLink | null;
  children: CandidateLink[];
  version: { id: string; version: string; number: number; webPath: string } | null;
  loggedModels: {
    id: string;
    name: string;
    status: string;
    modelType: string | null;
    files: { path: string; size: number; downloadUrl: string }[];
  }[];
  artifacts: { id: string; path: string; size: number; downloadUrl: string }[];
}

interface CandidatePageData {
  project: {
    id: string;
    path: string;
    name: string;
    webPath: string;
    candidate: CandidateData | null;
  } | null;
}

interface CandidateChartsData {
  node: { id: string; metricHistories: { name: string; steps: number[]; values: ChartValue[] }[] } | null;
}

interface CandidateUpdatedData {
  candidateUpdated: {
    candidateId: string;
    status: CandidateStatus;
    endTime: string | null;
    metrics: MetricPoint[];
  };
}

/** Points that arrived by subscription, per metric, in step order. */
type LivePoints = Record<string, { steps: number[]; values: ChartValue[] }>;

interface StepRange {
  min: number;
  max: number;
}

export function CandidatePage(props: { project: string; model: string; iid: number }): ReactNode {
  const { data, error, loading } = useQuery<CandidatePageData>(candidatePage, {
    project: props.project,
    iid: props.iid,
  });
  const candidate = data?.project?.candidate ?? null;
  if (candidate === null) {
    if (error) return <p className="error">{error.message}</p>;
    if (loading) return <p className="muted">Loading…</p>;
    return (
      <p className="error" data-testid="not-found">
        Candidate {props.iid} was not found in {props.project}.
      </p>
    );
  }
  return <CandidateView key={candidate.id} candidate={candidate} project={data?.project?.path ?? ""} />;
}

function CandidateView(props: { candidate: CandidateData; project: string }): ReactNode {
  const { candidate } = props;
  const [status, setStatus] = useState(candidate.status);
  const [endTime, setEndTime] = useState(candidate.endTime);
  const [latest, setLatest] = useState<Record<string, MetricPoint>>(() =>
    Object.fromEntries(candidate.metrics.map((metric) => [metric.name, metric])),
  );
  const [live, setLive] = useState<LivePoints>({});

  const onUpdate = useCallback((update: CandidateUpdatedData) => {
    const { status: newStatus, endTime: newEnd, metrics } = update.candidateUpdated;
    setStatus(newStatus);
    setEndTime(newEnd);
    if (metrics.length === 0) return;
    setLatest((previous) => {
      const next = { ...previous };
      for (const metric of metrics) {
        const known = next[metric.name];
        if (!known || metric.step >= known.step) next[metric.name] = metric;
      }
      return next;
    });
    setLive((previous) => {
      const next = { ...previous };
      for (const metric of metrics) {
        const line = next[metric.name] ?? { steps: [], values: [] };
        const steps = [...line.steps];
        const values = [...line.values];
        const last = steps.length - 1;
        if (last >= 0 && metric.step < steps[last]) continue;
        if (last >= 0 && metric.step === steps[last]) values[last] = chartValue(metric);
        else {
          steps.push(metric.step);
          values.push(chartValue(metric));
        }
        next[metric.name] = { steps, values };
      }
      return next;
    });
  }, []);
  const watching = status === "RUNNING" || status === "SCHEDULED";
  useSubscription<CandidateUpdatedData>(
    candidateUpdated,
    watching ? { id: candidate.id } : null,
    onUpdate,
  );

  useTicking(watching);
  const metricNames = useMemo(() => Object.keys(latest).sort(), [latest]);
  const userTags = candidate.metadata.filter((tag) => !tag.name.startsWith("mlflow."));
  const systemTags = candidate.metadata.filter((tag) => tag.name.startsWith("mlflow."));
  const source = candidate.metadata.find((tag) => tag.name === "mlflow.source.name")?.value;

  return (
    <div className="candidate stack">
      <div className="page-header">
        <div>
          <div className="muted small">
            <Link to={candidate.model.webPath}>{candidate.model.displayName}</Link> · candidate{" "}
            {candidate.iid}
          </div>
          <h1 data-testid="candidate-name">{candidate.name}</h1>
        </div>
        <span className={`badge ${statusTone(status)}`} data-testid="candidate-status">
          {status}
        </span>
      </div>

      <section className="card candidate-summary">
        <dl className="candidate-facts">
          <Fact label="Run id">
            <code>{candidate.eid}</code>
          </Fact>
          <Fact label="Author">{candidate.author?.name ?? candidate.author?.username ?? "–"}</Fact>
          <Fact label="Started">{formatTime(candidate.startTime)}</Fact>
          <Fact label="Ended">{formatTime(endTime)}</Fact>
          <Fact label="Duration">
            <span data-testid="candidate-duration">{duration(candidate.startTime, endTime)}</span>
          </Fact>
          {source ? <Fact label="Source">{source}</Fact> : null}
          <Fact label="Version">
            {candidate.version ? (
              <span data-testid="candidate-version">
                <Link to={candidate.version.webPath}>{candidate.version.version}</Link>
              </span>
            ) : (
              "not promoted"
            )}
          </Fact>
          <Fact label="Parent">
            {candidate.parent ? (
              <span data-testid="candidate-parent">
                <Link to={candidate.parent.webPath}>{candidate.parent.name}</Link>
              </span>
            ) : (
              "–"
            )}
          </Fact>
          {candidate.deleted ? <Fact label="Lifecycle">deleted</Fact> : null}
        </dl>
        {candidate.children.length > 0 ? (
          <div className="candidate-children">
            <h3>Child runs</h3>
            <ul data-testid="candidate-children">
              {candidate.children.map((child) => (
                <li key={child.id}>
                  <Link to={child.webPath}>{child.name}</Link>{" "}
                  <span className={`badge ${statusTone(child.status)}`}>{child.status}</span>
                </li>
              ))}
            </ul>
          </div>
        ) : null}
      </section>

      <div className="candidate-columns">
        <section className="card">
          <h2>Parameters</h2>
          <KeyValueTable rows={candidate.params} testId="param" empty="No parameters." />
        </section>
        <section className="card">
          <h2>Metrics</h2>
          {metricNames.length === 0 ? (
            <p className="muted">No metrics.</p>
          ) : (
            <table className="table" data-testid="metrics">
              <thead>
                <tr>
                  <th>Name</th>
                  <th className="number">Latest</th>
                  <th className="number">Step</th>
                </tr>
              </thead>
              <tbody>
                {metricNames.map((name) => (
                  <tr key={name} data-testid="metric" data-name={name}>
                    <td>{name}</td>
                    <td className="number" data-testid="metric-value">
                      {formatMetric(latest[name])}
                    </td>
                    <td className="number">{latest[name].step}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      </div>

      {metricNames.length > 0 ? (
        <CandidateCharts candidateId={candidate.id} metricNames={metricNames} live={live} />
      ) : null}

      <section className="card" data-testid="candidate-artifacts">
        <h2>Artifacts</h2>
        <ArtifactsTree files={candidate.artifacts} empty="No artifacts." />
      </section>

      {candidate.loggedModels.length > 0 ? (
        <section className="card">
          <h2>Logged models</h2>
          {candidate.loggedModels.map((model) => (
            <div key={model.id} className="candidate-logged-model" data-testid="logged-model">
              <h3>
                {model.name} <code className="muted small">{model.id}</code>{" "}
                <span className="badge">{model.status}</span>
              </h3>
              <ArtifactsTree files={model.files} empty="No files." />
            </div>
          ))}
        </section>
      ) : null}

      {candidate.inputs.length > 0 ? (
        <section className="card">
          <h2>Datasets</h2>
          <table className="table" data-testid="inputs">
            <thead>
              <tr>
                <th>Name</th>
                <th>Context</th>
                <th>Digest</th>
                <th>Source</th>
              </tr>
            </thead>
            <tbody>
              {candidate.inputs.map((input, index) => (
                <tr key={`${input.name}-${input.digest ?? ""}-${index}`} data-testid="input">
                  <td>{input.name}</td>
                  <td>{input.context ?? "–"}</td>
                  <td>
                    <code>{input.digest ?? "–"}</code>
                  </td>
                  <td className="candidate-source">
                    {input.sourceType ? `${input.sourceType}: ` : ""}
                    {input.source ?? "–"}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      ) : null}

      <section className="card">
        <h2>Tags</h2>
        <KeyValueTable rows={userTags} testId="tag" empty="No tags." />
        {systemTags.length > 0 ? (
          <details className="candidate-system-tags">
            <summary>MLflow tags ({systemTags.length})</summary>
            <KeyValueTable rows={systemTags} testId="tag" empty="" />
          </details>
        ) : null}
      </section>
    </div>
  );
}

/** One chart per chosen metric, all sharing one step range. */
function CandidateCharts(props: {
  candidateId: string;
  metricNames: string[];
  live: LivePoints;
}): ReactNode {
  const { metricNames, live } = props;
  const [chosen, setChosen] = useState<string[] | null>(null);
  const [range, setRange] = useState<StepRange | null>(null);
  const names = (chosen ?? metricNames.slice(0, DEFAULT_CHARTS)).filter((name) =>
    metricNames.includes(name),
  );
  const { data, error } = useQuery<CandidateChartsData>(candidateCharts, {
    id: props.candidateId,
    names,
    maxPoints: MAX_POINTS,
    minStep: range?.min ?? null,
    maxStep: range?.max ?? null,
  });
  const fetched = data?.node?.metricHistories ?? null;

  const namesKey = names.join("\u0000");
  const series = useMemo(() => {
    // One chart per metric: each gets its series list, kept while its data stays.
    const byName = new Map<string, ChartSeries[]>();
    if (fetched === null) return byName;
    for (const name of namesKey ? namesKey.split("\u0000") : []) {
      const history = fetched.find((item) => item.name === name);
      byName.set(name, [withLivePoints(name, history, live[name], range)]);
    }
    return byName;
  }, [fetched, live, range, namesKey]);

  const toggle = (name: string): void => {
    const current = chosen ?? names;
    setChosen(current.includes(name) ? current.filter((item) => item !== name) : [...current, name]);
  };
  const zoom = useCallback((min: number, max: number) => setRange({ min, max }), []);
  const resetZoom = useCallback(() => setRange(null), []);

  return (
    <section className="card">
      <div className="candidate-charts-head">
        <h2>Charts</h2>
        {range ? (
          <span className="muted small" data-testid="chart-range">
            steps {range.min} to {range.max}
          </span>
        ) : null}
      </div>
      <fieldset className="candidate-metric-choice">
        <legend className="muted small">Metrics</legend>
        {metricNames.map((name) => (
          <label key={name}>
            <input
              type="checkbox"
              data-testid="metric-choice"
              value={name}
              checked={names.includes(name)}
              onChange={() => toggle(name)}
            />
            {name}
          </label>
        ))}
      </fieldset>
      {error ? <p className="error">{error.message}</p> : null}
      {fetched === null && !error ? <p className="muted">Loading charts…</p> : null}
      <div className="candidate-charts">
        {[...series.entries()].map(([name, lines]) => (
          <div key={name} className="candidate-chart" data-testid="metric-chart" data-name={name}>
            <Chart
              title={name}
              series={lines}
              onZoom={zoom}
              zoomed={range !== null}
              onResetZoom={resetZoom}
            />
          </div>
        ))}
      </div>
    </section>
  );
}

/** A fetched history followed by the points logged since (those past its last step,
 * inside the zoomed range if any). */
function withLivePoints(
  name: string,
  history: { steps: number[]; values: ChartValue[] } | undefined,
  extra: { steps: number[]; values: ChartValue[] } | undefined,
  range: StepRange | null,
): ChartSeries {
  const steps = history?.steps ?? [];
  const values = history?.values ?? [];
  if (!extra) return { label: name, steps, values };
  const lastStep = steps.length ? steps[steps.length - 1] : -Infinity;
  const merged = { label: name, steps: [...steps], values: [...values] };
  extra.steps.forEach((step, index) => {
    if (step <= lastStep) return;
    if (range && (step < range.min || step > range.max)) return;
    merged.steps.push(step);
    merged.values.push(extra.values[index]);
  });
  return merged;
}

function chartValue(metric: MetricPoint): ChartValue {
  switch (metric.kind) {
    case "FINITE":
      return metric.value;
    case "NAN":
      return "NaN";
    case "POSITIVE_INFINITY":
      return "Infinity";
    case "NEGATIVE_INFINITY":
      return "-Infinity";
  }
}

function formatMetric(metric: MetricPoint): string {
  if (metric.kind !== "FINITE" || metric.value === null) return String(chartValue(metric));
  return String(Number(metric.value.toPrecision(6)));
}

function KeyValueTable(props: { rows: KeyValue[]; testId: string; empty: string }): ReactNode {
  if (props.rows.length === 0) return props.empty ? <p className="muted">{props.empty}</p> : null;
  return (
    <table className="table candidate-key-values">
      <tbody>
        {props.rows.map((row) => (
          <tr key={row.name} data-testid={props.testId} data-name={row.name}>
            <th scope="row">{row.name}</th>
            <td data-testid={`${props.testId}-value`}>{row.value}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Fact(props: { label: string; children: ReactNode }): ReactNode {
  return (
    <div>
      <dt>{props.label}</dt>
      <dd>{props.children}</dd>
    </div>
  );
}

/** Re-renders every second while `on` (a running candidate's duration grows). */
function useTicking(on: boolean): void {
  const [, setTick] = useState(0);
  useEffect(() => {
    if (!on) return undefined;
    const timer = window.setInterval(() => setTick((tick) => tick + 1), 1000);
    return () => window.clearInterval(timer);
  }, [on]);
}

function statusTone(status: CandidateStatus): string {
  switch (status) {
    case "FINISHED":
      return "success";
    case "RUNNING":
    case "SCHEDULED":
      return "info";
    case "FAILED":
      return "danger";
    case "KILLED":
      return "warning";
  }
}

function formatTime(time: string | null): string {
  return time ? new Date(time).toLocaleString() : "–";
}

function duration(start: string | null, end: string | null): string {
  if (!start) return "–";
  const seconds = Math.max(
    0,
    Math.round(((end ? Date.parse(end) : Date.now()) - Date.parse(start)) / 1000),
  );
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const parts = hours ? [`${hours}h`, `${minutes}m`] : minutes ? [`${minutes}m`] : [];
  return [...parts, `${seconds % 60}s`].join(" ") + (end ? "" : " so far");
}
