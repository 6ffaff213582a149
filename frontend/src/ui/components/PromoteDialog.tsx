// Promotes a candidate into a version of its model: a semver (the server's `<number>.0.0`
// when left empty), a description, and optionally an alias pointed at the new version.
// Each error the server answers is shown beside the field it names (others above the
// buttons). On success the Version page opens. If the version was created but the alias
// was refused, the dialog stays on the alias alone, so a second try does not create a
// second version.

import { useState, type FormEvent, type ReactNode } from "react";

import { request, RequestError } from "../api";
import { navigate } from "../router";
import createVersion from "../operations/PromoteDialogCreate.graphql?raw";
import setAlias from "../operations/PromoteDialogAlias.graphql?raw";
import "./PromoteDialog.css";

export interface PromotedCandidate {
  id: string;
  iid: number;
  name: string;
}

interface FieldError {
  message: string;
  code: string;
  field: string | null;
}

type Answer<T extends string, V> = ({ __typename: T } & V) | ({ __typename: string } & FieldError);

interface PromoteDialogCreateData {
  modelVersionCreate: Answer<"ModelVersion", { id: string; version: string; webPath: string }>;
}

interface PromoteDialogAliasData {
  aliasSet: Answer<"ModelVersion", { id: string; aliases: string[]; webPath: string }>;
}

type Field = "version" | "description" | "alias" | "other";

export function PromoteDialog(props: {
  modelId: string;
  candidate: PromotedCandidate;
  canSetAlias: boolean;
  onClose: () => void;
}): ReactNode {
  const [version, setVersion] = useState("");
  const [description, setDescription] = useState("");
  const [alias, setAliasName] = useState("");
  const [errors, setErrors] = useState<Partial<Record<Field, string>>>({});
  const [created, setCreated] = useState<{ id: string; version: string; webPath: string } | null>(null);
  const [busy, setBusy] = useState(false);

  const pointAlias = async (target: { id: string; webPath: string }): Promise<boolean> => {
    const answer = (await request<PromoteDialogAliasData>(setAlias, { versionId: target.id, alias: alias.trim() })).aliasSet;
    if (answer.__typename === "ModelVersion") return true;
    const failure = answer as FieldError;
    setErrors({ [failure.field === "alias" ? "alias" : "other"]: failure.message });
    return false;
  };

  const submit = async (event: FormEvent): Promise<void> => {
    event.preventDefault();
    setBusy(true);
    setErrors({});
    try {
      let target = created;
      if (target === null) {
        const answer = (
          await request<PromoteDialogCreateData>(createVersion, {
            input: {
              modelId: props.modelId,
              candidateId: props.candidate.id,
              version: version.trim() || null,
              description: description.trim() || null,
            },
          })
        ).modelVersionCreate;
        if (answer.__typename !== "ModelVersion") {
          const failure = answer as FieldError;
          setErrors({ [fieldOf(failure.field)]: failure.message });
          return;
        }
        target = answer as { id: string; version: string; webPath: string };
        setCreated(target);
      }
      if (alias.trim() && !(await pointAlias(target))) return;
      navigate(target.webPath);
    } catch (error) {
      setErrors({ other: error instanceof RequestError ? error.message : String(error) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <div
      className="dialog-backdrop"
      onClick={props.onClose}
      onKeyDown={(event) => {
        if (event.key === "Escape") props.onClose();
      }}
    >
      <form
        className="dialog promote-dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby="promote-title"
        data-testid="promote-dialog"
        onClick={(event) => event.stopPropagation()}
        onSubmit={(event) => void submit(event)}
      >
        <h2 id="promote-title">Promote {props.candidate.name}</h2>
        {created ? (
          <p data-testid="promote-created">
            Version {created.version} was created; its alias was not set.
          </p>
        ) : (
          <>
            <label className="field">
              <span>Version</span>
              <input
                data-testid="promote-version"
                placeholder="next number, e.g. 2.0.0"
                value={version}
                onChange={(event) => setVersion(event.target.value)}
                aria-invalid={errors.version ? true : undefined}
                autoFocus
              />
              <FieldMessage testId="promote-version-error" message={errors.version} />
            </label>
            <label className="field">
              <span>Description</span>
              <textarea
                data-testid="promote-description"
                rows={3}
                value={description}
                onChange={(event) => setDescription(event.target.value)}
                aria-invalid={errors.description ? true : undefined}
              />
              <FieldMessage testId="promote-description-error" message={errors.description} />
            </label>
          </>
        )}
        {props.canSetAlias && (
          <>
            <label className="field">
              <span>Alias (optional)</span>
              <input
                data-testid="promote-alias"
                placeholder="e.g. champion"
                value={alias}
                onChange={(event) => setAliasName(event.target.value)}
                aria-invalid={errors.alias ? true : undefined}
              />
              <FieldMessage testId="promote-alias-error" message={errors.alias} />
            </label>
          </>
        )}
        <FieldMessage testId="promote-error" message={errors.other} />
        <div className="dialog-buttons">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" data-testid="promote-submit" disabled={busy}>
            {created ? "Set alias" : "Promote"}
          </button>
        </div>
      </form>
    </div>
  );
}

function FieldMessage(props: { testId: string; message: string | undefined }): ReactNode {
  return props.message ? (
    <span className="field-error" role="alert" data-testid={props.testId}>
      {props.message}
    </span>
  ) : null;
}

function fieldOf(field: string | null): Field {
  return field === "version" || field === "description" ? field : "other";
}
