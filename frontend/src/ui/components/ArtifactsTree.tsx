// Files shown as a tree of folders by their paths ("a/b/c.txt" is c.txt in b in a).
// Folders start closed and open on click; a file with a `downloadUrl` is a plain link
// (the session cookie authenticates the download). Folders come before files, each
// sorted by name.
//
// Test hooks: `data-testid="artifact-folder"` (a folder's toggle button, its text the
// folder name) and `data-testid="artifact-file"` (a file's link or name), each with
// `data-path` the full path.

import { useState, type ReactNode } from "react";

import "./ArtifactsTree.css";

export interface TreeFile {
  path: string;
  size: number;
  downloadUrl?: string | null;
}

interface Folder {
  name: string;
  path: string;
  folders: Map<string, Folder>;
  files: { name: string; file: TreeFile }[];
}

/** The folders and files of `files`, nested by the `/`-separated parts of their paths. */
export function buildTree(files: readonly TreeFile[]): Folder {
  const root: Folder = { name: "", path: "", folders: new Map(), files: [] };
  for (const file of files) {
    const parts = file.path.split("/").filter(Boolean);
    let folder = root;
    for (const part of parts.slice(0, -1)) {
      let next = folder.folders.get(part);
      if (!next) {
        next = {
          name: part,
          path: folder.path ? `${folder.path}/${part}` : part,
          folders: new Map(),
          files: [],
        };
        folder.folders.set(part, next);
      }
      folder = next;
    }
    folder.files.push({ name: parts[parts.length - 1] ?? file.path, file });
  }
  return root;
}

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let size = bytes / 1024;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${size.toFixed(size < 10 ? 1 : 0)} ${units[unit]}`;
}

export function ArtifactsTree(props: { files: readonly TreeFile[]; empty?: string }): ReactNode {
  if (props.files.length === 0) {
    return <p className="muted">{props.empty ?? "No files."}</p>;
  }
  return (
    <ul className="tree" data-testid="artifacts-tree">
      <FolderItems folder={buildTree(props.files)} />
    </ul>
  );
}

function FolderItems(props: { folder: Folder }): ReactNode {
  const folders = [...props.folder.folders.values()].sort((a, b) => a.name.localeCompare(b.name));
  const files = [...props.folder.files].sort((a, b) => a.name.localeCompare(b.name));
  return (
    <>
      {folders.map((folder) => (
        <FolderItem key={folder.path} folder={folder} />
      ))}
      {files.map(({ name, file }) => (
        <li key={file.path} className="tree-file">
          {file.downloadUrl ? (
            <a href={file.downloadUrl} download={name} data-testid="artifact-file" data-path={file.path}>
              {name}
            </a>
          ) : (
            <span data-testid="artifact-file" data-path={file.path}>
              {name}
            </span>
          )}
          <span className="tree-size">{formatSize(file.size)}</span>
        </li>
      ))}
    </>
  );
}

function FolderItem(props: { folder: Folder }): ReactNode {
  const [open, setOpen] = useState(false);
  const { folder } = props;
  return (
    <li className="tree-folder">
      <button
        type="button"
        className="tree-toggle"
        aria-expanded={open}
        data-testid="artifact-folder"
        data-path={folder.path}
        onClick={() => setOpen(!open)}
      >
        <span className="tree-caret" aria-hidden="true">
          {open ? "▾" : "▸"}
        </span>
        {folder.name}
      </button>
      {open ? (
        <ul className="tree">
          <FolderItems folder={folder} />
        </ul>
      ) : null}
    </li>
  );
}
