"""A small in-memory stand-in for the Hugging Face Hub, served over real HTTP on a loopback port.

It speaks the endpoints that ``huggingface_hub`` 2.x uses to create a repository and a branch,
upload files (``preupload`` then ``commit``, with every file uploaded as a regular, base64-inlined
git blob: no LFS or Xet storage), read repository info and trees, and download files (``HEAD``
and ``GET`` on ``/{repo}/resolve/{revision}/{path}``, with the ``ETag``, ``X-Repo-Commit`` and
``Content-Length`` headers that ``hf_hub_download`` checks), with the Hub's ``X-Error-Code``
headers on errors so the client raises its usual exceptions. Faults can be injected per file to
serve truncated or corrupted downloads or to drop the connection.

Only loopback addresses are accepted. The server runs in a daemon thread; `FakeHub.stop` shuts
it down (the test fixtures call it in their teardown).

Example:
    >>> hub = FakeHub().start()  # doctest: +SKIP
    >>> env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token}  # doctest: +SKIP
    >>> hub.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
_API = re.compile(rf"^/api/models/{_REPO}(?P<rest>/.*)?$")
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, which the Hub sends as the ETag of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Fault:
    """How to misserve one file.

    Args:
        truncate: Serve only the first ``truncate`` bytes, with headers that agree with the short
            body (so only a checksum can tell).
        short_body: Announce the full size on ``HEAD`` but send only ``short_body`` bytes on ``GET``.
        flip_byte: Serve the file with the byte at this offset inverted.
        drop: Close the connection without answering.
    """

    truncate: int | None = None
    short_body: int | None = None
    flip_byte: int | None = None
    drop: bool = False


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    message: str
    parent: str | None
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    created: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeHub:
    """An in-memory Hub on ``http://127.0.0.1:PORT``.

    Args:
        host: A loopback address to bind.
        port: 0 picks a free port.
        user: The account that the token belongs to.
        token: The only token accepted for writes and for private repositories.

    Attributes:
        repos: Repositories by id.
        faults: ``{(repo_id, path): Fault}``, applied to downloads of that file at any revision;
            path ``"*"`` with ``drop=True`` drops every request about the repository.
        log: ``(method, path)`` of every request, in order.
        unhandled: Requests that no route matched (a test can assert it stays empty).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, user: str = "tester", token: str = "hf_test"):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"FakeHub binds loopback addresses only, not {host}")
        self.host, self.port, self.user, self.token = host, port, user, token
        self.repos: dict[str, Repo] = {}
        self.faults: dict[tuple[str, str], Fault] = {}
        self.log: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="fake-hub"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- direct manipulation (test setup) ----------------------------------------------------
    def create_repo(self, repo_id: str, private: bool = False) -> Repo:
        with self.lock:
            if repo_id not in self.repos:
                repo = Repo(repo_id, private, _now())
                first = self._new_commit(
                    {".gitattributes": b"*.safetensors filter=lfs\n"}, "initial commit", None
                )
                repo.commits[first.sha] = first
                repo.branches["main"] = first.sha
                self.repos[repo_id] = repo
            return self.repos[repo_id]

    def add_files(
        self, repo_id: str, files: dict[str, bytes], branch: str = "main", message: str = "add"
    ) -> str:
        """Commit ``files`` to ``branch`` (creating the repo and the branch if needed); returns the sha."""
        repo = self.create_repo(repo_id)
        with self.lock:
            head = repo.branches.get(branch, repo.branches["main"])
            tree = {**repo.commits[head].files, **files}
            commit = self._new_commit(tree, message, head)
            repo.commits[commit.sha] = commit
            repo.branches[branch] = commit.sha
            return commit.sha

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].resolve(revision).files)

    def _new_commit(self, files: dict[str, bytes], message: str, parent: str | None) -> Commit:
        self._counter += 1
        digest = hashlib.sha1()
        digest.update(f"{self._counter}\0{message}\0{parent}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha1(files[path]).encode())
        return Commit(digest.hexdigest(), dict(files), message, parent, _now())


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.0"
    server_version = "FakeHub/1.0"

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests read hub.log instead
        pass

    # -- plumbing ----------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, {"error": message}, headers)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.hub.token}"

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            status = 404 if self._authorized() else 401
            self._error(status, "RepoNotFound", "Repository not found")
            return None
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit | None:
        commit = repo.resolve(revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}")
        return commit

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        with self.hub.lock:
            self.hub.log.append((self.command, path))
        if self.command == "POST" and path == "/api/repos/create":
            return self._create_repo()
        if self.command == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml()
        if self.command == "GET" and path == "/api/whoami-v2":
            return self._whoami()
        match = _RESOLVE.match(path) or _API.match(path)
        if match and self.hub.faults.get((match["repo"], "*"), Fault()).drop:
            self.close_connection = True
            self.connection.close()  # every request about this repo: the network fails
            return
        match = _RESOLVE.match(path)
        if match and self.command in ("GET", "HEAD"):
            return self._resolve(match["repo"], match["rev"], unquote(match["path"]))
        match = _API.match(path)
        if match:
            repo_id, rest = match["repo"], match["rest"] or ""
            parts = rest.split("/", 2)[1:]  # "/tree/main/sub" -> ["tree", "main", "sub"]
            verb = parts[0] if parts else ""
            if self.command == "GET" and verb in ("", "revision"):
                return self._model_info(
                    repo_id, parts[1] if verb == "revision" and len(parts) > 1 else "main"
                )
            if self.command == "GET" and verb == "tree" and len(parts) >= 2:
                return self._tree(repo_id, parts[1], unquote(parts[2]) if len(parts) > 2 else "")
            if self.command == "GET" and verb == "refs":
                return self._refs(repo_id)
            if self.command == "POST" and verb == "branch" and len(parts) >= 2:
                return self._create_branch(repo_id, unquote("/".join(parts[1:])))
            if self.command == "POST" and verb == "preupload" and len(parts) >= 2:
                return self._preupload(repo_id, "/".join(parts[1:]))
            if self.command == "POST" and verb == "commit" and len(parts) >= 2:
                return self._commit_files(repo_id, "/".join(parts[1:]))
        with self.hub.lock:
            self.hub.unhandled.append((self.command, self.path))
        self._error(404, None, f"the test hub does not serve {self.command} {path}")

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    # -- account and repositories ------------------------------------------------------------
    def _whoami(self):
        if not self._authorized():
            return self._error(401, None, "Invalid credentials in Authorization header")
        self._send(200, {"type": "user", "name": self.hub.user, "fullname": "Test User", "orgs": []})

    def _create_repo(self):
        payload = json.loads(self._body() or b"{}")
        if not self._authorized():
            return self._error(401, None, "Invalid credentials in Authorization header")
        if payload.get("type", "model") != "model":
            return self._error(400, None, "the test hub holds model repositories only")
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        url = f"{self.hub.endpoint}/{repo_id}"
        if repo_id in self.hub.repos:
            return self._send(409, {"error": "You already created this model repo", "url": url})
        self.hub.create_repo(repo_id, private=payload.get("visibility") == "private")
        self._send(200, {"url": url, "name": repo_id, "id": repo_id})

    def _create_branch(self, repo_id: str, branch: str):
        payload = json.loads(self._body() or b"{}")
        if not self._authorized():
            return self._error(401, None, "Invalid credentials in Authorization header")
        repo = self._repo(repo_id)
        if repo is None:
            return
        if branch in repo.branches:
            return self._error(409, None, "Reference already exists")
        start = self._commit(repo, payload.get("startingPoint") or "main")
        if start is None:
            return
        with self.hub.lock:
            repo.branches[branch] = start.sha
        self._send(200, {})

    def _refs(self, repo_id: str):
        repo = self._repo(repo_id)
        if repo is None:
            return
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
            for name, sha in repo.branches.items()
        ]
        self._send(200, {"branches": branches, "converts": [], "tags": []})

    def _validate_yaml(self):
        payload = json.loads(self._body() or b"{}")
        content = payload.get("content", "")
        if content.startswith("---"):
            try:
                yaml.safe_load(content.split("---", 2)[1])
            except yaml.YAMLError as err:
                return self._send(400, {"errors": [{"message": str(err)}], "warnings": []})
        self._send(200, {"errors": [], "warnings": []})

    # -- reading -----------------------------------------------------------------------------
    def _model_info(self, repo_id: str, revision: str):
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = self._commit(repo, revision)
        if commit is None:
            return
        card = _card_data(commit.files.get("README.md", b""))
        blobs = self.query.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for path, data in sorted(commit.files.items()):
            entry = {"rfilename": path}
            if blobs:
                entry.update(size=len(data), blobId=git_blob_sha1(data))
            siblings.append(entry)
        info = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(card.get("tags") or []),
            "library_name": card.get("library_name"),
            "pipeline_tag": card.get("pipeline_tag"),
            "cardData": card or None,
            "siblings": siblings,
            "usedStorage": sum(len(d) for d in commit.files.values()),
        }
        self._send(200, info)

    def _tree(self, repo_id: str, revision: str, prefix: str):
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = self._commit(repo, revision)
        if commit is None:
            return
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        entries, folders = [], set()
        for path, data in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            rest = path[len(base) :]
            if "/" in rest and not recursive:
                folders.add(base + rest.split("/", 1)[0])
                continue
            if recursive:
                parents = rest.split("/")[:-1]
                folders.update(base + "/".join(parents[: i + 1]) for i in range(len(parents)))
            entries.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path})
        if base and not entries and not folders:
            return self._error(404, "EntryNotFound", f"{prefix} does not exist", commit.sha)
        for folder in sorted(folders):
            entries.append(
                {
                    "type": "directory",
                    "oid": hashlib.sha1(folder.encode()).hexdigest(),
                    "size": 0,
                    "path": folder,
                }
            )
        self._send(200, entries)

    def _resolve(self, repo_id: str, revision: str, path: str):
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = self._commit(repo, revision)
        if commit is None:
            return
        if path not in commit.files:
            return self._error(
                404, "EntryNotFound", f"{path} does not exist at {unquote(revision)}", commit.sha
            )
        data = commit.files[path]
        etag = git_blob_sha1(data)
        fault = self.hub.faults.get((repo_id, path), Fault())
        if fault.drop:
            self.close_connection = True
            self.connection.close()
            return
        if fault.flip_byte is not None:
            data = (
                data[: fault.flip_byte] + bytes([data[fault.flip_byte] ^ 0xFF]) + data[fault.flip_byte + 1 :]
            )
        if fault.truncate is not None:
            data = data[: fault.truncate]
        headers = {
            "ETag": f'"{etag}"',
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        if fault.short_body is not None and self.command == "GET":
            data = data[: fault.short_body]
        self._send(200, data, headers)

    # -- writing -----------------------------------------------------------------------------
    def _preupload(self, repo_id: str, revision: str):
        payload = json.loads(self._body() or b"{}")
        if not self._authorized():
            return self._error(401, None, "Invalid credentials in Authorization header")
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = self._commit(repo, revision)
        if commit is None:
            return
        files = []
        for item in payload.get("files", []):
            existing = commit.files.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",  # no LFS/Xet: content travels inside the commit payload
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(existing) if existing is not None else None,
                }
            )
        self._send(200, {"files": files, "commitOid": commit.sha})

    def _commit_files(self, repo_id: str, revision: str):
        raw = self._body()
        if not self._authorized():
            return self._error(401, None, "Invalid credentials in Authorization header")
        repo = self._repo(repo_id)
        if repo is None:
            return
        branch = unquote(revision)
        if self.query.get("create_pr"):
            return self._error(400, None, "the test hub does not open pull requests")
        if branch not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
        lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        header = next((item["value"] for item in lines if item["key"] == "header"), {})
        with self.hub.lock:
            head = repo.branches[branch]
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent):
                return self._error(412, None, f"parent commit {parent} is not the head of {branch}")
            tree = dict(repo.commits[head].files)
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    content = value["content"]
                    tree[value["path"]] = (
                        base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    )
                elif key == "deletedFile":
                    if value["path"] not in tree:
                        return self._error(404, "EntryNotFound", "A file with this name doesn't exist")
                    del tree[value["path"]]
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    tree = {p: d for p, d in tree.items() if not p.startswith(folder)}
                elif key == "lfsFile":
                    return self._error(400, None, "the test hub stores regular files only (no LFS)")
            commit = self.hub._new_commit(tree, header.get("summary", ""), head)
            repo.commits[commit.sha] = commit
            repo.branches[branch] = commit.sha
        self._send(
            200,
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{self.hub.endpoint}/{repo_id}/commit/{commit.sha}",
                "commitMessage": commit.message,
                "hookOutput": "",
                "pullRequestUrl": None,
            },
        )


def _card_data(readme: bytes) -> dict:
    text = readme.decode("utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    try:
        data = yaml.safe_load(text.split("---", 2)[1])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def wait_until_serving(hub: FakeHub, timeout: float = 5.0) -> None:
    """Block until the server answers (it normally does at once)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{hub.endpoint}/api/validate-yaml", data=b"{}", timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
