// The errors a mutation answers in its result union (`... on Error { message code field }`),
// each shown next to the field it names; the others above the form.

import type { ReactNode } from "react";

export interface MutationError {
  __typename: string;
  message: string;
  code: string;
  field: string | null;
}

/** The error of a result union, if the result is one (every error type has `code`). */
export function asError(result: { __typename: string }): MutationError | null {
  return "code" in result && "message" in result ? (result as MutationError) : null;
}

/** The message for `field` (under it), or for the form when `field` is null and the
 * error names no field the form has. */
export function FieldError(props: {
  error: MutationError | null;
  field: string | null;
  fields?: string[];
}): ReactNode {
  const error = props.error;
  if (!error) return null;
  const named = error.field !== null && (props.fields ?? []).includes(error.field);
  const mine = props.field === null ? !named : error.field === props.field;
  if (!mine) return null;
  return (
    <span className="field-error" data-testid={`error-${props.field ?? "form"}`}>
      {error.message}
    </span>
  );
}
