// A background job followed live (`jobUpdated`: its state now, then each change, until it
// finished): its kind, status, what it has done so far and, if it failed, why.
//
// `onFinished` is called once, with the final status, when the job succeeded or failed.

import { useRef, useState, type ReactNode } from "react";

import { useSubscription } from "../api";
import jobProgressUpdated from "../operations/JobProgressUpdated.graphql?raw";
import { formatCount, formatDateTime } from "./format";
import "./JobProgress.css";

export type JobStatus = "PENDING" | "RUNNING" | "SUCCEEDED" | "FAILED";

export interface JobState {
  id: string;
  kind: string;
  status: JobStatus;
  progress: { done: number; total: number | null };
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
}

interface JobProgressUpdatedData {
  jobUpdated: JobState;
}

const STATUS_BADGES: Record<JobStatus, string> = {
  PENDING: "badge",
  RUNNING: "badge info",
  SUCCEEDED: "badge success",
  FAILED: "badge danger",
};

/** "delete_model" → "Delete model". */
export function jobKindLabel(kind: string): string {
  const words = kind.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function JobProgress(props: {
  jobId: string;
  onFinished?: (status: JobStatus) => void;
}): ReactNode {
  const [job, setJob] = useState<JobState | null>(null);
  const reported = useRef(false);
  useSubscription<JobProgressUpdatedData>(jobProgressUpdated, { id: props.jobId }, (data) => {
    const next = data.jobUpdated;
    setJob(next);
    if ((next.status === "SUCCEEDED" || next.status === "FAILED") && !reported.current) {
      reported.current = true;
      props.onFinished?.(next.status);
    }
  });
  if (job === null) {
    return (
      <div className="job-progress" data-testid="job-progress" data-status="">
        <span className="muted">Waiting for the job…</span>
      </div>
    );
  }
  const { done, total } = job.progress;
  const finished = job.status === "SUCCEEDED" || job.status === "FAILED";
  const share = total ? Math.min(1, done / total) : finished ? 1 : null;
  return (
    <div className="job-progress" data-testid="job-progress" data-status={job.status}>
      <div className="row">
        <strong>{jobKindLabel(job.kind)}</strong>
        <span className={STATUS_BADGES[job.status]} data-testid="job-status">
          {job.status}
        </span>
        <span className="muted small" data-testid="job-done">
          {formatCount(done)}
          {total !== null ? ` of ${formatCount(total)}` : ""} done
        </span>
        {job.finishedAt ? (
          <span className="muted small">finished {formatDateTime(job.finishedAt)}</span>
        ) : null}
      </div>
      <div className={`job-bar${share === null ? " indeterminate" : ""}`}>
        <div className={`job-bar-fill ${job.status.toLowerCase()}`} style={{ width: `${(share ?? 0.3) * 100}%` }} />
      </div>
      {job.error ? (
        <p className="error" data-testid="job-error">
          {job.error}
        </p>
      ) : null}
    </div>
  );
}
