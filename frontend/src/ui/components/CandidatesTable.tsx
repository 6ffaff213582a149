// A model's candidates as a table: the columns chosen from the names the candidates
// logged, a filter (conditions built from those names, a status, and MLflow's filter
// grammar), sorting by any column (the server puts missing values last), cursor paging,
// and row selection leading to Compare (2–10 rows) or Promote (one row).
//
// The chosen columns, the sort and the page size live in the address's query (`columns`,
// `sort`, `per_page`), so a link shows the same table; the filter, the page and the
// selection (which may span pages) belong to the page.

import { useState, type FormEvent, type ReactNode } from "react";

import { useQuery } from "../api";
import { Link, navigate, paths } from "../router";
import { PromoteDialog, type PromotedCandidate } from "./PromoteDialog";
import candidatesTable from "../operations/CandidatesTable.graphql?raw";
import "./CandidatesTable.css";

const PAGE_SIZES = [10, 20, 50, 100];
const DEFAULT_PAGE_SIZE = 20;
const DEFAULT_METRIC_COLUMNS = 4;
const COMPARE_MIN = 2;
const COMPARE_MAX = 10;

export type ColumnKind = "metrics" | "params" | "tags";
export interface Column {
  kind: ColumnKind;
  name: string;
}

export interface CandidateKeys {
  metrics: string[];
  params: string[];
  tags: string[];
}

export type Status = "RUNNING" | "SCHEDULED" | "FINISHED" | "FAILED" | "KILLED";
const STATUSES: Status[] = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];
export type MetricKind = "FINITE" | "NAN" | "POSITIVE_INFINITY" | "NEGATIVE_INFINITY";
type OrderField = "CREATED_AT" | "START_TIME" | "DURATION" | "STATUS" | "NAME" | "METRIC" | "PARAM" | "TAG";
type Direction = "ASC" | "DESC";

interface Sort {
  field: OrderField;
  key: string | null;
  direction: Direction;
}

const METRIC_OPERATORS = ["GT", "GTE", "LT", "LTE", "EQ", "NE"] as const;
const TEXT_OPERATORS = ["EQ", "NE", "LIKE", "ILIKE"] as const;
const OPERATOR_SIGNS: Record<string, string> = {
  GT: ">",
  GTE: "≥",
  LT: "<",
  LTE: "≤",
  EQ: "=",
  NE: "≠",
  LIKE: "like",
  ILIKE: "ilike",
};

interface Condition {
  kind: "metric" | "param";
  name: string;
  op: string;
  value: string;
}

interface Filter {
  conditions: Condition[];
  status: Status | "";
  query: string;
}

interface CandidateRow {
  id: string;
  iid: number;
  name: string;
  status: Status;
  startTime: string | null;
  endTime: string | null;
  webPath: string;
  version: { version: string } | null;
  metrics: { name: string; value: number | null; kind: MetricKind }[];
  params: { name: string; value: string }[];
  metadata: { name: string; value: string }[];
}

interface CandidatesTableData {
  project: {
    id: string;
    model: {
      id: string;
      candidates: {
        totalCount: number;
        pageInfo: { hasNextPage: boolean; endCursor: string | null };
        edges: { node: CandidateRow }[];
      } | null;
    } | null;
  } | null;
}

export function CandidatesTable(props: {
  project: string;
  model: string;
  modelId: string;
  keys: CandidateKeys;
  canPromote: boolean;
  canSetAlias: boolean;
}): ReactNode {
  const { project, model, keys } = props;
  const [columns, setColumns] = useState<Column[]>(() => initialColumns(keys));
  const [sort, setSort] = useState<Sort>(initialSort);
  const [filter, setFilter] = useState<Filter>({ conditions: [], status: "", query: "" });
  const [pageSize, setPageSize] = useState<number>(initialPageSize);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [selected, setSelected] = useState<Map<string, PromotedCandidate>>(new Map());
  const [promoting, setPromoting] = useState<PromotedCandidate | null>(null);

  const after = cursors[cursors.length - 1];
  const names = (kind: ColumnKind): string[] =>
    columns.filter((column) => column.kind === kind).map((column) => column.name);
  const { data, error, loading } = useQuery<CandidatesTableData>(candidatesTable, {
    project,
    model,
    filter: filterInput(filter),
    orderBy: { field: sort.field, key: sort.key, direction: sort.direction },
    first: pageSize,
    after,
    metrics: names("metrics"),
    params: names("params"),
    tags: names("tags"),
  });
  const connection = data?.project?.model?.candidates ?? null;
  const rows = connection?.edges.map((edge) => edge.node) ?? [];

  const chooseColumns = (next: Column[]): void => {
    setColumns(next);
    writeQuery("columns", next.map(columnKey).join(","));
  };
  const sortBy = (field: OrderField, key: string | null): void => {
    const same = sort.field === field && sort.key === key;
    const next: Sort = { field, key, direction: same && sort.direction === "DESC" ? "ASC" : "DESC" };
    setSort(next);
    setCursors([null]);
    writeQuery("sort", `${sortKey(next)}:${next.direction.toLowerCase()}`);
  };
  const applyFilter = (next: Filter): void => {
    setFilter(next);
    setCursors([null]);
  };
  const toggle = (row: CandidateRow): void => {
    const next = new Map(selected);
    if (next.has(row.id)) next.delete(row.id);
    else next.set(row.id, { id: row.id, iid: row.iid, name: row.name });
    setSelected(next);
  };

  const header = (label: string, field: OrderField, key: string | null = null): ReactNode => {
    const active = sort.field === field && sort.key === key;
    const arrow = active ? (sort.direction === "DESC" ? " ▼" : " ▲") : "";
    return (
      <th key={`${field}:${key ?? ""}`} aria-sort={active ? (sort.direction === "DESC" ? "descending" : "ascending") : "none"}>
        <button
          type="button"
          className="candidates-sort"
          data-testid={`sort-${key === null ? field.toLowerCase() : `${columnKindOf(field)}.${key}`}`}
          onClick={() => sortBy(field, key)}
        >
          {label}
          {arrow}
        </button>
      </th>
    );
  };

  const chosen = [...selected.values()];
  return (
    <section className="candidates" data-testid="candidates">
      <div className="candidates-tools">
        <ColumnChooser keys={keys} columns={columns} onChange={chooseColumns} />
        <FilterBuilder keys={keys} applied={filter} onApply={applyFilter} />
      </div>
      {error && (
        <p className="error" role="alert" data-testid="candidates-error">
          {error.message}
        </p>
      )}
      <div className="candidates-actions">
        <span data-testid="candidates-count">
          {connection ? countText(connection.totalCount, (cursors.length - 1) * pageSize, rows.length) : loading ? "Loading…" : ""}
        </span>
        <span className="candidates-selection" data-testid="selection-count">
          {chosen.length > 0 ? `${chosen.length} selected` : ""}
        </span>
        {chosen.length >= COMPARE_MIN && chosen.length <= COMPARE_MAX && (
          <button
            type="button"
            className="primary"
            data-testid="compare-button"
            onClick={() => navigate(paths.compare(project, chosen.map((candidate) => candidate.id)))}
          >
            Compare {chosen.length}
          </button>
        )}
        {chosen.length === 1 && props.canPromote && (
          <button type="button" className="primary" data-testid="promote-button" onClick={() => setPromoting(chosen[0])}>
            Promote…
          </button>
        )}
        {chosen.length > 0 && (
          <button type="button" onClick={() => setSelected(new Map())}>
            Clear selection
          </button>
        )}
      </div>
      <div className="candidates-scroll">
        <table className="table candidates-table" data-testid="candidates-table">
          <thead>
            <tr>
              <th className="candidates-check">
                <span className="visually-hidden">Select</span>
              </th>
              {header("Name", "NAME")}
              {header("Status", "STATUS")}
              {header("Started", "START_TIME")}
              {header("Duration", "DURATION")}
              <th>Version</th>
              {columns.map((column) =>
                header(column.name, column.kind === "metrics" ? "METRIC" : column.kind === "params" ? "PARAM" : "TAG", column.name),
              )}
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.id} data-testid="candidate-row" className={selected.has(row.id) ? "selected" : undefined}>
                <td className="candidates-check">
                  <input
                    type="checkbox"
                    aria-label={`Select ${row.name}`}
                    data-testid={`select-${row.iid}`}
                    checked={selected.has(row.id)}
                    onChange={() => toggle(row)}
                  />
                </td>
                <td data-testid="cell-name">
                  <Link to={paths.candidate(project, model, row.iid)}>{row.name}</Link>
                </td>
                <td>
                  <StatusBadge status={row.status} />
                </td>
                <td>{row.startTime ? formatTime(row.startTime) : "—"}</td>
                <td>{duration(row.startTime, row.endTime)}</td>
                <td>{row.version ? row.version.version : ""}</td>
                {columns.map((column) => (
                  <td key={columnKey(column)} data-testid={`cell-${columnKey(column)}`} className={column.kind === "metrics" ? "number" : undefined}>
                    {cellText(row, column)}
                  </td>
                ))}
              </tr>
            ))}
            {connection && rows.length === 0 && (
              <tr>
                <td colSpan={6 + columns.length} className="candidates-empty">
                  No candidates match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <div className="candidates-paging">
        <label className="muted">
          Per page{" "}
          <select
            data-testid="page-size"
            value={pageSize}
            onChange={(event) => {
              setPageSize(Number(event.target.value));
              setCursors([null]);
              writeQuery("per_page", event.target.value);
            }}
          >
            {PAGE_SIZES.map((size) => (
              <option key={size} value={size}>
                {size}
              </option>
            ))}
          </select>
        </label>
        <button
          type="button"
         
          data-testid="page-previous"
          disabled={cursors.length <= 1}
          onClick={() => setCursors(cursors.slice(0, -1))}
        >
          ← Previous
        </button>
        <button
          type="button"
         
          data-testid="page-next"
          disabled={!connection?.pageInfo.hasNextPage}
          onClick={() => connection?.pageInfo.endCursor && setCursors([...cursors, connection.pageInfo.endCursor])}
        >
          Next →
        </button>
      </div>
      {promoting && (
        <PromoteDialog
          modelId={props.modelId}
          candidate={promoting}
          canSetAlias={props.canSetAlias}
          onClose={() => setPromoting(null)}
        />
      )}
    </section>
  );
}

function ColumnChooser(props: {
  keys: CandidateKeys;
  columns: Column[];
  onChange: (columns: Column[]) => void;
}): ReactNode {
  const shown = new Set(props.columns.map(columnKey));
  const toggle = (column: Column): void => {
    const key = columnKey(column);
    props.onChange(
      shown.has(key) ? props.columns.filter((each) => columnKey(each) !== key) : [...props.columns, column],
    );
  };
  const group = (kind: ColumnKind, title: string): ReactNode =>
    props.keys[kind].length > 0 && (
      <fieldset key={kind}>
        <legend>{title}</legend>
        {props.keys[kind].map((name) => {
          const column = { kind, name };
          return (
            <label key={name}>
              <input
                type="checkbox"
                data-testid={`column-${columnKey(column)}`}
                checked={shown.has(columnKey(column))}
                onChange={() => toggle(column)}
              />
              {name}
            </label>
          );
        })}
      </fieldset>
    );
  return (
    <details className="column-chooser" data-testid="column-chooser">
      <summary>Columns ({props.columns.length})</summary>
      <div className="column-chooser-panel">
        {group("metrics", "Metrics")}
        {group("params", "Params")}
        {group("tags", "Tags")}
      </div>
    </details>
  );
}

function FilterBuilder(props: {
  keys: CandidateKeys;
  applied: Filter;
  onApply: (filter: Filter) => void;
}): ReactNode {
  const [draft, setDraft] = useState<Filter>(props.applied);
  const update = (index: number, change: Partial<Condition>): void => {
    setDraft({
      ...draft,
      conditions: draft.conditions.map((condition, at) => {
        if (at !== index) return condition;
        const next = { ...condition, ...change };
        if (change.kind && change.kind !== condition.kind) {
          next.name = (change.kind === "metric" ? props.keys.metrics : props.keys.params)[0] ?? "";
          next.op = change.kind === "metric" ? "GT" : "EQ";
        }
        return next;
      }),
    });
  };
  const add = (): void => {
    const kind = props.keys.metrics.length > 0 || props.keys.params.length === 0 ? "metric" : "param";
    const name = (kind === "metric" ? props.keys.metrics : props.keys.params)[0] ?? "";
    setDraft({
      ...draft,
      conditions: [...draft.conditions, { kind, name, op: kind === "metric" ? "GT" : "EQ", value: "" }],
    });
  };
  const submit = (event: FormEvent): void => {
    event.preventDefault();
    props.onApply(draft);
  };
  const clear = (): void => {
    const empty: Filter = { conditions: [], status: "", query: "" };
    setDraft(empty);
    props.onApply(empty);
  };
  return (
    <form className="filter-builder" data-testid="filter-builder" onSubmit={submit}>
      {draft.conditions.map((condition, index) => (
        <div className="filter-condition" key={index} data-testid="filter-condition">
          <select
            aria-label="Kind"
            data-testid="condition-kind"
            value={condition.kind}
            onChange={(event) => update(index, { kind: event.target.value as Condition["kind"] })}
          >
            <option value="metric">metric</option>
            <option value="param">param</option>
          </select>
          <select
            aria-label="Name"
            data-testid="condition-name"
            value={condition.name}
            onChange={(event) => update(index, { name: event.target.value })}
          >
            {(condition.kind === "metric" ? props.keys.metrics : props.keys.params).map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
          <select
            aria-label="Operator"
            data-testid="condition-op"
            value={condition.op}
            onChange={(event) => update(index, { op: event.target.value })}
          >
            {(condition.kind === "metric" ? METRIC_OPERATORS : TEXT_OPERATORS).map((op) => (
              <option key={op} value={op}>
                {OPERATOR_SIGNS[op]}
              </option>
            ))}
          </select>
          <input
            aria-label="Value"
            data-testid="condition-value"
            type={condition.kind === "metric" ? "number" : "text"}
            step="any"
            required={condition.kind === "metric"}
            value={condition.value}
            onChange={(event) => update(index, { value: event.target.value })}
          />
          <button
            type="button"
           
            aria-label="Remove condition"
            onClick={() => setDraft({ ...draft, conditions: draft.conditions.filter((_, at) => at !== index) })}
          >
            ×
          </button>
        </div>
      ))}
      <div className="filter-row">
        <button type="button" data-testid="add-condition" onClick={add}>
          + Condition
        </button>
        <select
          aria-label="Status"
          data-testid="filter-status"
          value={draft.status}
          onChange={(event) => setDraft({ ...draft, status: event.target.value as Filter["status"] })}
        >
          <option value="">any status</option>
          {STATUSES.map((status) => (
            <option key={status} value={status}>
              {status.toLowerCase()}
            </option>
          ))}
        </select>
        <input
          className="filter-query"
          aria-label="MLflow filter"
          data-testid="filter-query"
          placeholder="metrics.accuracy > 0.9 and params.optimizer = 'adam'"
          value={draft.query}
          onChange={(event) => setDraft({ ...draft, query: event.target.value })}
        />
        <button type="submit" className="primary" data-testid="filter-apply">
          Filter
        </button>
        <button type="button" data-testid="filter-clear" onClick={clear}>
          Clear
        </button>
      </div>
    </form>
  );
}

function filterInput(filter: Filter): Record<string, unknown> {
  const metrics = filter.conditions
    .filter((condition) => condition.kind === "metric" && condition.name && condition.value !== "")
    .map((condition) => ({ name: condition.name, op: condition.op, value: Number(condition.value) }));
  const params = filter.conditions
    .filter((condition) => condition.kind === "param" && condition.name)
    .map((condition) => ({ name: condition.name, op: condition.op, value: condition.value }));
  return {
    metrics: metrics.length > 0 ? metrics : null,
    params: params.length > 0 ? params : null,
    status: filter.status ? [filter.status] : null,
    query: filter.query.trim() || null,
  };
}

export function columnKey(column: Column): string {
  return `${column.kind}.${column.name}`;
}

function columnKindOf(field: OrderField): ColumnKind {
  return field === "METRIC" ? "metrics" : field === "PARAM" ? "params" : "tags";
}

function sortKey(sort: Sort): string {
  return sort.key === null ? sort.field.toLowerCase() : `${columnKindOf(sort.field)}.${sort.key}`;
}

function readQuery(name: string): string | null {
  return new URLSearchParams(window.location.search).get(name);
}

/** Keeps a choice in the address without a navigation (the page stays as it is). */
function writeQuery(name: string, value: string): void {
  const url = new URL(window.location.href);
  url.searchParams.set(name, value);
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
}

function initialColumns(keys: CandidateKeys): Column[] {
  const written = readQuery("columns");
  if (written === null) {
    return keys.metrics.slice(0, DEFAULT_METRIC_COLUMNS).map((name) => ({ kind: "metrics", name }));
  }
  return written
    .split(",")
    .filter(Boolean)
    .flatMap((key): Column[] => {
      const dot = key.indexOf(".");
      const kind = key.slice(0, dot);
      const name = key.slice(dot + 1);
      return (kind === "metrics" || kind === "params" || kind === "tags") && name ? [{ kind, name }] : [];
    });
}

function initialPageSize(): number {
  const written = Number(readQuery("per_page"));
  return PAGE_SIZES.includes(written) ? written : DEFAULT_PAGE_SIZE;
}

function initialSort(): Sort {
  const written = readQuery("sort");
  const fallback: Sort = { field: "CREATED_AT", key: null, direction: "DESC" };
  if (written === null) return fallback;
  const [key, direction = "desc"] = splitLast(written, ":");
  const order: Direction = direction === "asc" ? "ASC" : "DESC";
  const dot = key.indexOf(".");
  const byColumn: Record<string, OrderField> = { metrics: "METRIC", params: "PARAM", tags: "TAG" };
  if (dot > 0 && key.slice(0, dot) in byColumn) {
    return { field: byColumn[key.slice(0, dot)], key: key.slice(dot + 1), direction: order };
  }
  const plain: OrderField[] = ["CREATED_AT", "START_TIME", "DURATION", "STATUS", "NAME"];
  const field = plain.find((each) => each.toLowerCase() === key);
  return field ? { field, key: null, direction: order } : fallback;
}

function splitLast(text: string, separator: string): [string, string | undefined] {
  const at = text.lastIndexOf(separator);
  return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)];
}

function cellText(row: CandidateRow, column: Column): string {
  if (column.kind === "metrics") {
    const metric = row.metrics.find((each) => each.name === column.name);
    return metric ? formatMetric(metric.value, metric.kind) : "—";
  }
  const entries = column.kind === "params" ? row.params : row.metadata;
  return entries.find((each) => each.name === column.name)?.value ?? "—";
}

export function formatMetric(value: number | null, kind: MetricKind): string {
  if (kind === "NAN") return "NaN";
  if (kind === "POSITIVE_INFINITY") return "∞";
  if (kind === "NEGATIVE_INFINITY") return "-∞";
  return value === null ? "—" : String(Number(value.toPrecision(6)));
}

export function formatTime(iso: string): string {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

const STATUS_BADGES: Record<Status, string> = {
  RUNNING: "badge info",
  SCHEDULED: "badge",
  FINISHED: "badge success",
  FAILED: "badge danger",
  KILLED: "badge warning",
};

export function StatusBadge(props: { status: Status }): ReactNode {
  return <span className={STATUS_BADGES[props.status]}>{props.status.toLowerCase()}</span>;
}

function duration(start: string | null, end: string | null): string {
  if (!start || !end) return "—";
  const seconds = Math.max(0, (Date.parse(end) - Date.parse(start)) / 1000);
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

function countText(total: number, before: number, shown: number): string {
  if (total === 0 || shown === 0) return `0 of ${total}`;
  return `${before + 1}–${before + shown} of ${total}`;
}
