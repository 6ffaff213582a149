// A project's background jobs (deletions, migrations, upload checks), newest first: each
// with its status and progress, those still going followed live. `job` (the address's
// `?job=`) is one to follow at the top: a deletion just started from another page.

import type { ReactNode } from "react";

import { useQuery } from "../api";
import { formatCount, formatDateTime } from "../components/format";
import { JobProgress, jobKindLabel, type JobState } from "../components/JobProgress";
import { ProjectTabs } from "../components/ProjectTabs";
import { Missing, QueryStatus } from "../components/QueryStatus";
import jobsList from "../operations/JobsList.graphql?raw";

const SHOWN = 50;

interface JobsListData {
  project: {
    id: string;
    path: string;
    name: string;
    jobs: {
      totalCount: number;
      edges: { node: JobState & { attempts: number } }[];
    } | null;
  } | null;
}

const FINISHED = new Set(["SUCCEEDED", "FAILED"]);

export function JobsPage(props: { project: string; job: string | null }): ReactNode {
  const query = useQuery<JobsListData>(jobsList, { path: props.project, first: SHOWN });
  if (!query.data) return <QueryStatus state={query} />;
  const project = query.data.project;
  if (project === null) return <Missing />;
  const jobs = project.jobs?.edges.map((edge) => edge.node) ?? [];
  return (
    <>
      <div className="page-header">
        <h1>{project.name}</h1>
      </div>
      <ProjectTabs project={project.path} current="jobs" />
      {props.job ? (
        <div className="card" data-testid="followed-job">
          <JobProgress jobId={props.job} onFinished={query.refetch} />
        </div>
      ) : null}
      {jobs.length === 0 ? (
        <p className="muted" data-testid="jobs-empty">
          No jobs yet.
        </p>
      ) : (
        <table className="table" data-testid="jobs-table">
          <thead>
            <tr>
              <th>Job</th>
              <th>Status</th>
              <th className="number">Attempts</th>
              <th>Started</th>
              <th>Finished</th>
            </tr>
          </thead>
          <tbody>
            {jobs.map((job) => (
              <tr key={job.id} data-testid="job-row" data-status={job.status}>
                <td>{jobKindLabel(job.kind)}</td>
                <td>
                  {FINISHED.has(job.status) ? (
                    <>
                      <span className={job.status === "FAILED" ? "badge danger" : "badge success"}>
                        {job.status}
                      </span>{" "}
                      <span className="muted small">{formatCount(job.progress.done)} done</span>
                      {job.error ? <div className="error">{job.error}</div> : null}
                    </>
                  ) : (
                    <JobProgress jobId={job.id} onFinished={query.refetch} />
                  )}
                </td>
                <td className="number">{job.attempts}</td>
                <td className="muted">{formatDateTime(job.createdAt)}</td>
                <td className="muted">{formatDateTime(job.finishedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {project.jobs && project.jobs.totalCount > jobs.length ? (
        <p className="muted small">
          The latest {jobs.length} of {formatCount(project.jobs.totalCount)} jobs.
        </p>
      ) : null}
    </>
  );
}
