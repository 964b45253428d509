// Why a file the operator named could not be read, in words (not an errno code).
/** A file that could not be read, in words: what the operator has to fix. */
export function fileProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied (check who may read it)';
  if (code === 'EISDIR') return 'it is a directory, not a file';
  return code ?? (err instanceof Error ? err.message : String(err));
}
