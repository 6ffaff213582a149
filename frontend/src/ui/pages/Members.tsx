// A project's members and their roles. Who may manage members (`manageMembers`) adds
// them by username, changes their role and removes them; everyone else only reads.

import { useState, type FormEvent, type ReactNode } from "react";

import { request, useQuery } from "../api";
import { asError, FieldError, type MutationError } from "../components/FieldError";
import { ProjectTabs } from "../components/ProjectTabs";
import { Missing, QueryStatus } from "../components/QueryStatus";
import membersList from "../operations/MembersList.graphql?raw";
import membersRemove from "../operations/MembersRemove.graphql?raw";
import membersSet from "../operations/MembersSet.graphql?raw";
import { roleLabel } from "./Projects";

const ROLES = ["GUEST", "REPORTER", "DEVELOPER", "MAINTAINER", "OWNER"] as const;
type Role = (typeof ROLES)[number];

interface MembersListData {
  project: {
    id: string;
    path: string;
    name: string;
    userPermissions: { manageMembers: boolean };
    members: { id: string; role: Role; user: { id: string; username: string; name: string | null } }[];
  } | null;
}

type Result = { __typename: string };
interface MembersSetData {
  memberSet: Result;
}
interface MembersRemoveData {
  memberRemove: Result;
}

const ADD_FIELDS = ["username", "role"];

export function MembersPage(props: { project: string }): ReactNode {
  const query = useQuery<MembersListData>(membersList, { path: props.project });
  const [username, setUsername] = useState("");
  const [role, setRole] = useState<Role>("DEVELOPER");
  const [addError, setAddError] = useState<MutationError | null>(null);
  // An error of a change to one member's row, by username.
  const [rowError, setRowError] = useState<{ username: string; error: MutationError } | null>(
    null,
  );
  if (!query.data) return <QueryStatus state={query} />;
  const project = query.data.project;
  if (project === null) return <Missing />;
  const manage = project.userPermissions.manageMembers;

  const add = async (event: FormEvent): Promise<void> => {
    event.preventDefault();
    const input = { project: project.path, username: username.trim(), role };
    const result = (await request<MembersSetData>(membersSet, { input })).memberSet;
    const error = asError(result);
    setAddError(error);
    if (!error) {
      setUsername("");
      query.refetch();
    }
  };
  const change = async (member: string, next: Role): Promise<void> => {
    const input = { project: project.path, username: member, role: next };
    const error = asError((await request<MembersSetData>(membersSet, { input })).memberSet);
    setRowError(error ? { username: member, error } : null);
    query.refetch();
  };
  const remove = async (member: string): Promise<void> => {
    const input = { project: project.path, username: member };
    const result = (await request<MembersRemoveData>(membersRemove, { input })).memberRemove;
    const error = asError(result);
    setRowError(error ? { username: member, error } : null);
    query.refetch();
  };

  return (
    <>
      <div className="page-header">
        <h1>{project.name}</h1>
      </div>
      <ProjectTabs project={project.path} current="members" />
      {manage ? (
        <form className="card" onSubmit={(event) => void add(event)} data-testid="member-add">
          <h2>Add a member</h2>
          <FieldError error={addError} field={null} fields={ADD_FIELDS} />
          <div className="row">
            <label className="field">
              <span>Username</span>
              <input
                required
                value={username}
                onChange={(event) => setUsername(event.target.value)}
                data-testid="member-add-username"
              />
              <FieldError error={addError} field="username" />
            </label>
            <label className="field">
              <span>Role</span>
              <select
                value={role}
                onChange={(event) => setRole(event.target.value as Role)}
                data-testid="member-add-role"
              >
                {ROLES.map((option) => (
                  <option key={option} value={option}>
                    {roleLabel(option)}
                  </option>
                ))}
              </select>
              <FieldError error={addError} field="role" />
            </label>
          </div>
          <button type="submit" className="primary" data-testid="member-add-submit">
            Add member
          </button>
        </form>
      ) : null}
      <table className="table" data-testid="members-table">
        <thead>
          <tr>
            <th>Member</th>
            <th>Role</th>
            {manage ? <th /> : null}
          </tr>
        </thead>
        <tbody>
          {project.members.map((member) => (
            <tr key={member.id} data-testid="member-row" data-username={member.user.username}>
              <td>
                <strong>{member.user.username}</strong>
                {member.user.name ? <span className="muted"> {member.user.name}</span> : null}
              </td>
              <td>
                {manage ? (
                  <select
                    value={member.role}
                    aria-label={`Role of ${member.user.username}`}
                    onChange={(event) =>
                      void change(member.user.username, event.target.value as Role)
                    }
                    data-testid="member-role"
                  >
                    {ROLES.map((option) => (
                      <option key={option} value={option}>
                        {roleLabel(option)}
                      </option>
                    ))}
                  </select>
                ) : (
                  <span data-testid="member-role">{roleLabel(member.role)}</span>
                )}
                {rowError?.username === member.user.username ? (
                  <div className="field-error" data-testid="member-error">
                    {rowError.error.message}
                  </div>
                ) : null}
              </td>
              {manage ? (
                <td className="number">
                  <button
                    type="button"
                    className="danger"
                    onClick={() => void remove(member.user.username)}
                    data-testid="member-remove"
                  >
                    Remove
                  </button>
                </td>
              ) : null}
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
