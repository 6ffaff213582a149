// Compares 2–10 candidates (by global id, from the address): their params side by side
// with the rows that differ marked, their latest metrics, and overlaid charts of the
// metrics chosen (one chart per metric, a line per candidate). The tables come from one
// request (`nodes(ids)`); the charts from one more per choice of metrics.

import { useState, type ReactNode } from "react";

import { useQuery } from "../api";
import { Link, paths } from "../router";
import { Chart, type ChartSeries, type ChartValue } from "../components/Chart";
import { formatMetric, StatusBadge, type MetricKind, type Status } from "../components/CandidatesTable";
import comparePage from "../operations/ComparePage.graphql?raw";
import compareCharts from "../operations/CompareCharts.graphql?raw";
import "./Compare.css";

const MIN_CANDIDATES = 2;
const MAX_CANDIDATES = 10;
const DEFAULT_CHARTS = 2;
const CHART_POINTS = 500;

interface ComparedCandidate {
  __typename: "Candidate";
  id: string;
  iid: number;
  name: string;
  status: Status;
  webPath: string;
  model: { name: string };
  params: { name: string; value: string }[];
  metrics: { name: string; value: number | null; kind: MetricKind; step: number }[];
}

interface ComparePageData {
  nodes: (ComparedCandidate | { __typename: string } | null)[];
}

interface CompareChartsData {
  nodes: (
    | {
        __typename: "Candidate";
        id: string;
        metricHistories: { name: string; steps: number[]; values: ChartValue[] }[];
      }
    | { __typename: string }
    | null
  )[];
}

export function ComparePage(props: { project: string; ids: string[] }): ReactNode {
  const ids = [...new Set(props.ids)];
  const countOk = ids.length >= MIN_CANDIDATES && ids.length <= MAX_CANDIDATES;
  const { data, error, loading } = useQuery<ComparePageData>(comparePage, { ids: countOk ? ids : [] });
  if (!countOk) {
    return (
      <p className="alert" data-testid="compare-count">
        Choose from {MIN_CANDIDATES} to {MAX_CANDIDATES} candidates to compare ({ids.length} given).
      </p>
    );
  }
  if (error && !data) return <p className="alert">{error.message}</p>;
  if (loading && !data) return <p className="muted">Loading…</p>;
  const candidates = (data?.nodes ?? []).filter(
    (node): node is ComparedCandidate => node !== null && node.__typename === "Candidate",
  );
  if (candidates.length < MIN_CANDIDATES) {
    return <p className="alert">Fewer than {MIN_CANDIDATES} of these candidates were found.</p>;
  }
  return (
    <div className="compare-page" data-testid="compare-page">
      <h1>Comparing {candidates.length} candidates</h1>
      <CompareTables project={props.project} candidates={candidates} />
      <CompareCharts candidates={candidates} />
    </div>
  );
}

function CompareTables(props: { project: string; candidates: ComparedCandidate[] }): ReactNode {
  const { candidates } = props;
  const paramNames = unionOfNames(candidates.map((candidate) => candidate.params));
  const metricNames = unionOfNames(candidates.map((candidate) => candidate.metrics));
  const head = (
    <thead>
      <tr>
        <th />
        {candidates.map((candidate) => (
          <th key={candidate.id}>
            <Link to={paths.candidate(props.project, candidate.model.name, candidate.iid)}>
              <span data-testid="compare-candidate">{candidate.name}</span>
            </Link>
            <div>
              <StatusBadge status={candidate.status} />
            </div>
          </th>
        ))}
      </tr>
    </thead>
  );
  const row = (testId: string, name: string, cells: string[]): ReactNode => {
    const differs = new Set(cells).size > 1;
    return (
      <tr key={name} data-testid={testId} data-differs={differs} className={differs ? "differs" : undefined}>
        <th scope="row">
          {name}
          {differs && <span className="compare-differs-mark" title="The values differ"> ≠</span>}
        </th>
        {cells.map((cell, index) => (
          <td key={candidates[index].id}>{cell}</td>
        ))}
      </tr>
    );
  };
  return (
    <>
      <section className="card">
        <h2>Params</h2>
        {paramNames.length === 0 ? (
          <p className="muted">No params were logged.</p>
        ) : (
          <div className="compare-scroll">
            <table className="table compare-table" data-testid="compare-params">
              {head}
              <tbody>
                {paramNames.map((name) =>
                  row(
                    "param-row",
                    name,
                    candidates.map((candidate) => candidate.params.find((each) => each.name === name)?.value ?? "—"),
                  ),
                )}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <section className="card">
        <h2>Latest metrics</h2>
        {metricNames.length === 0 ? (
          <p className="muted">No metrics were logged.</p>
        ) : (
          <div className="compare-scroll">
            <table className="table compare-table" data-testid="compare-metrics">
              {head}
              <tbody>
                {metricNames.map((name) =>
                  row(
                    "metric-row",
                    name,
                    candidates.map((candidate) => {
                      const metric = candidate.metrics.find((each) => each.name === name);
                      return metric ? formatMetric(metric.value, metric.kind) : "—";
                    }),
                  ),
                )}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}

function CompareCharts(props: { candidates: ComparedCandidate[] }): ReactNode {
  const { candidates } = props;
  const metricNames = unionOfNames(candidates.map((candidate) => candidate.metrics));
  const [chosen, setChosen] = useState<string[]>(() => metricNames.slice(0, DEFAULT_CHARTS));
  const ids = candidates.map((candidate) => candidate.id);
  const { data, error } = useQuery<CompareChartsData>(compareCharts, {
    ids: chosen.length > 0 ? ids : [],
    names: chosen,
    maxPoints: CHART_POINTS,
  });
  const histories = new Map<string, Map<string, { steps: number[]; values: ChartValue[] }>>();
  for (const node of data?.nodes ?? []) {
    if (node && "metricHistories" in node) {
      histories.set(node.id, new Map(node.metricHistories.map((series) => [series.name, series])));
    }
  }
  const toggle = (name: string): void =>
    setChosen(chosen.includes(name) ? chosen.filter((each) => each !== name) : [...chosen, name]);
  return (
    <section className="card">
      <h2>Charts</h2>
      <div className="compare-chart-choice" data-testid="compare-chart-choice">
        {metricNames.map((name) => (
          <label key={name}>
            <input
              type="checkbox"
              data-testid={`chart-metric-${name}`}
              checked={chosen.includes(name)}
              onChange={() => toggle(name)}
            />
            {name}
          </label>
        ))}
      </div>
      {error && <p className="error">{error.message}</p>}
      <div className="compare-charts">
        {chosen.map((name) => {
          const series: ChartSeries[] = candidates.flatMap((candidate) => {
            const history = histories.get(candidate.id)?.get(name);
            return history ? [{ label: candidate.name, steps: history.steps, values: history.values }] : [];
          });
          return (
            <div key={name} className="compare-chart" data-testid="compare-chart" data-metric={name}>
              <Chart title={name} series={series} height={220} />
            </div>
          );
        })}
      </div>
    </section>
  );
}

function unionOfNames(lists: { name: string }[][]): string[] {
  return [...new Set(lists.flatMap((list) => list.map((each) => each.name)))].sort();
}
