// One wording for a schema problem in an operator's file: the problem inside a union (the branch that
// got furthest), with its full path, and a required field that is absent said plainly instead of
// zod's "expected string, received undefined".
import type { z } from 'zod';

type Issue = z.core.$ZodIssue;

/** The first problem, looking into unions: of their branches, the one whose problem lies deepest. */
export function firstIssue(error: z.ZodError): Issue | undefined {
  let issue: Issue | undefined = error.issues[0];
  while (issue?.code === 'invalid_union' && issue.errors.length > 0) {
    const deepest = issue.errors.map((branch) => branch[0]).reduce((a, b) => ((b?.path.length ?? -1) > (a?.path.length ?? -1) ? b : a));
    if (!deepest) break;
    issue = { ...deepest, path: [...issue.path, ...deepest.path] };
  }
  return issue;
}

export function issueText(issue: Issue | undefined): string {
  if (!issue) return 'is invalid';
  if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message)) return `is missing (${issue.expected} required)`;
  return issue.message;
}
