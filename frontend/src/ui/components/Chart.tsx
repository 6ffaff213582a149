// A line chart of metric series over steps, drawn by uPlot.
//
// Props (the contract other pages build on):
// - `series`: the lines, each `{ label, steps, values }` with `steps[i]` paired with
//   `values[i]`. Values are what GraphQL's `MetricValue` answers: a number, or the
//   strings "NaN", "Infinity", "-Infinity" (null is accepted too); anything that is not a
//   finite number is drawn as a gap. Series need not share steps: they are aligned on the
//   union of their steps and a line spans the steps it lacks. A new `series` array
//   redraws the plot: memoize it while its data stays the same.
// - `title`: shown above the plot.
// - `height`: of the plot in CSS pixels (default 240); the width follows the container.
// - `onZoom(minStep, maxStep)`: called when the user drags across the plot, with the
//   whole steps the selection covers; the chart zooms at once, and the page may refetch
//   that range at full resolution and pass the new series in. Without it the chart
//   only zooms what it has.
// - `zoomed` + `onResetZoom`: the page's own zoom state: while `zoomed`, a "Reset zoom"
//   button calls `onResetZoom` (a chart zoomed locally resets itself).
//
// Points are marked where they are sparse enough to see (uPlot's default). The legend
// shows each series' value at the hovered step. For tests and timings the
// root element (`data-testid="chart"`) carries `data-points` (each series' point
// count, comma separated), `data-steps` ("<first>-<last>" of the shown data), and, when
// the address has `?timings`, `data-render-ms`: milliseconds from receiving the series
// to uPlot's first draw of them.

import { useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import "./Chart.css";

export type ChartValue = number | string | null;

export interface ChartSeries {
  label: string;
  steps: readonly number[];
  values: readonly ChartValue[];
}

export interface ChartProps {
  series: readonly ChartSeries[];
  title?: string;
  height?: number;
  onZoom?: (minStep: number, maxStep: number) => void;
  zoomed?: boolean;
  onResetZoom?: () => void;
}

const PALETTE = [
  "#2563eb",
  "#dc2626",
  "#16a34a",
  "#d97706",
  "#7c3aed",
  "#0891b2",
  "#db2777",
  "#4b5563",
  "#65a30d",
  "#9333ea",
];

/** The colour of the n-th series (pages that draw their own legend use the same). */
export function seriesColor(index: number): string {
  return PALETTE[index % PALETTE.length];
}

const timingsWanted = (): boolean => new URLSearchParams(window.location.search).has("timings");

/** Series aligned on the union of their steps: a step a series lacks is `undefined`
 * (spanned), a value that is not finite is `null` (a gap). */
export function alignSeries(series: readonly ChartSeries[]): uPlot.AlignedData {
  const union = new Set<number>();
  for (const line of series) for (const step of line.steps) union.add(step);
  const steps = Float64Array.from(union).sort();
  const shared = series.every(
    (line) => line.steps.length === steps.length && line.steps.every((step, i) => step === steps[i]),
  );
  const columns = series.map((line) => {
    const column: (number | null | undefined)[] = new Array<number | null | undefined>(
      steps.length,
    );
    if (shared) {
      // The common case (one candidate, or runs logged at the same steps): no lookups.
      for (let i = 0; i < steps.length; i++) column[i] = finite(line.values[i]);
      return column;
    }
    const position = new Map<number, number>();
    steps.forEach((step, i) => position.set(step, i));
    line.steps.forEach((step, i) => {
      column[position.get(step) ?? 0] = finite(line.values[i]);
    });
    return column;
  });
  return [steps, ...columns];
}

function finite(value: ChartValue | undefined): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function formatValue(value: number | null): string {
  if (value == null) return "–";
  const size = Math.abs(value);
  if (size >= 1e5 || (size !== 0 && size < 1e-3)) return value.toExponential(3);
  return String(Number(value.toPrecision(6)));
}

export function Chart(props: ChartProps): ReactNode {
  const { series, title, height = 240, onZoom, zoomed = false, onResetZoom } = props;
  const container = useRef<HTMLDivElement>(null);
  const root = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const zoomHandler = useRef(onZoom);
  zoomHandler.current = onZoom;
  const renderStart = useRef(0);
  const latest = useRef<uPlot.AlignedData | null>(null);
  const [localZoom, setLocalZoom] = useState(false);

  const labels = series.map((line) => line.label).join("\u0000");
  const data = useMemo(() => {
    renderStart.current = performance.now();
    return alignSeries(series);
  }, [series]);
  latest.current = data;
  const points = series.map((line) => line.steps.length).join(",");
  const xs = data[0];
  const stepRange = xs.length ? `${xs[0]}-${xs[xs.length - 1]}` : "";

  // The plot is built once per set of series labels; new data only redraws it.
  useEffect(() => {
    const element = container.current;
    if (!element) return undefined;
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 200),
      height,
      scales: { x: { time: false } },
      axes: [{ label: "step" }, { size: 60 }],
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { live: true },
      series: [
        { label: "step", value: (_u, step) => (step == null ? "–" : String(step)) },
        ...labels.split("\u0000").map((label, index) => ({
          label,
          stroke: seriesColor(index),
          width: 1.5,
          value: (_u: uPlot, value: number | null) => formatValue(value),
        })),
      ],
      hooks: {
        setSelect: [
          (u: uPlot) => {
            if (u.select.width < 2) return;
            const min = Math.floor(u.posToVal(u.select.left, "x"));
            const max = Math.ceil(u.posToVal(u.select.left + u.select.width, "x"));
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            u.setScale("x", { min, max });
            setLocalZoom(true);
            zoomHandler.current?.(min, max);
          },
        ],
        draw: [
          () => {
            if (renderStart.current && timingsWanted() && root.current) {
              const elapsed = performance.now() - renderStart.current;
              root.current.dataset.renderMs = elapsed.toFixed(1);
            }
            renderStart.current = 0;
          },
        ],
      },
    };
    const chart = new uPlot(options, latest.current ?? undefined, element);
    plot.current = chart;
    const resize = new ResizeObserver(() => {
      chart.setSize({ width: Math.max(element.clientWidth, 200), height });
    });
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
  }, [labels, height]);

  useEffect(() => {
    const chart = plot.current;
    if (chart && chart.data !== data) chart.setData(data, true);
    setLocalZoom(false);
  }, [data]);

  const showReset = zoomed || localZoom;
  const reset = (): void => {
    setLocalZoom(false);
    if (zoomed && onResetZoom) onResetZoom();
    else plot.current?.setData(data, true);
  };

  return (
    <div
      className="chart"
      ref={root}
      data-testid="chart"
      data-points={points}
      data-steps={stepRange}
    >
      <div className="chart-head">
        {title ? <h3 className="chart-title">{title}</h3> : null}
        {showReset ? (
          <button type="button" className="chart-reset" data-testid="chart-reset" onClick={reset}>
            Reset zoom
          </button>
        ) : null}
      </div>
      {xs.length === 0 ? <p className="chart-empty">No points logged.</p> : null}
      <div className={xs.length === 0 ? "chart-plot chart-plot-empty" : "chart-plot"} ref={container} />
    </div>
  );
}
