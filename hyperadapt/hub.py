"""The Hugging Face Hub: push and pull hypernetworks and generated adapters (cards: `cards.py`).

A hypernetwork repository holds ``config.json`` (the full config with the task specs),
``model.safetensors``, ``hyperadapt.json`` (the task and language vocabularies and the base
model's id and revision), ``recipe.yaml`` when the training recipe is known, and a model card
(``README.md``) rendered from ``model_cards/hypernetwork_card.md`` with evaluation results as
``model-index`` entries. A generated adapter is pushed as an ordinary peft repository whose card
carries ``library_name: peft``, ``base_model`` and tags.

Everything goes through ``huggingface_hub`` (``HfApi``, ``hf_hub_download``); it honours
``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HOME`` and ``HF_HUB_OFFLINE`` as usual. Weights load only from
safetensors: a repository that offers only pickles is refused before anything is downloaded, and
every downloaded file is checked against the size and hash that the Hub lists for it, so a
truncated or corrupted download is reported (and dropped from the cache) instead of loaded. No
code from a repository is ever run: hyperadapt never passes ``trust_remote_code``.

Example:
    >>> hypernet.push_to_hub("me/my-hypernet", private=True)  # doctest: +SKIP
    >>> hypernet = HyperNetwork.from_pretrained("me/my-hypernet", revision="main")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import PyTorchModelHubMixin

from .errors import HyperAdaptError

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from .hypernetwork import HyperNetwork

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MANIFEST_NAME = "hyperadapt.json"
RECIPE_NAME = "recipe.yaml"
CARD_NAME = "README.md"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_OPTIONAL_FILES = (MANIFEST_NAME, RECIPE_NAME, CARD_NAME)


# -- errors ------------------------------------------------------------------------------------


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@contextlib.contextmanager
def hub_errors(ref: str, revision: str | None = None, action: str = "download") -> Iterator[None]:
    """Turn ``huggingface_hub`` and network exceptions into one-line `HyperAdaptError`s.

    Args:
        ref: The repo id, for the message.
        revision: The revision asked for, for the message.
        action: ``"download"`` or ``"push"``.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{ref}" + (f" (revision {revision!r})" if revision else "")
    try:
        yield
    except HyperAdaptError:
        raise
    except HFValidationError as err:
        if action == "push":
            raise HyperAdaptError(
                f"cannot push to {ref!r}: it is not a valid Hub repo id (namespace/name): {err}"
            ) from None
        raise HyperAdaptError(
            f"{ref!r} is neither an existing folder nor a valid Hub repo id (namespace/name): {err}"
        ) from None
    except GatedRepoError:
        raise HyperAdaptError(
            f"{ref} is a gated repository: request access on its Hub page, then log in (hf auth login or HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise HyperAdaptError(
            f"{ref} has no revision {revision!r}: name an existing branch, tag or commit"
        ) from None
    except RepositoryNotFoundError:
        if action == "push":
            raise HyperAdaptError(
                f"cannot push to {ref}: the Hub at {_endpoint()} refused (no such namespace or no write "
                "access); check the repo id and your token (hf auth login or HF_TOKEN)"
            ) from None
        raise HyperAdaptError(
            f"repository {ref} was not found on the Hub at {_endpoint()}: check the id, or log in "
            "(hf auth login or HF_TOKEN) if it is private"
        ) from None
    except LocalEntryNotFoundError as err:
        if constants.is_offline_mode():
            raise HyperAdaptError(
                f"cannot {action} {where}: HF_HUB_OFFLINE is set and the files are not in the local cache; "
                "unset HF_HUB_OFFLINE to download them"
            ) from None
        cause = err.__cause__ or err.__context__
        detail = f" ({_short(cause)})" if cause else ""
        raise HyperAdaptError(
            f"cannot download {where}: the Hub at {_endpoint()} cannot be reached{detail} and the files are "
            "not in the local cache; check the network (or unset HF_HUB_OFFLINE) and try again"
        ) from None
    except EntryNotFoundError as err:
        name = _filename_of(err)
        raise HyperAdaptError(f"{where} has no file {name}") from None
    except OfflineModeIsEnabled:
        if action == "push":
            raise HyperAdaptError(
                f"cannot push to {where}: HF_HUB_OFFLINE is set; unset it to reach the Hub"
            ) from None
        raise HyperAdaptError(
            f"cannot {action} {where}: HF_HUB_OFFLINE is set and the files are not in the local cache"
        ) from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        message = err.server_message or _short(err)
        if status == 401:
            raise HyperAdaptError(
                f"the Hub refused to {action} {where} (401 unauthorized: {message}); log in with hf auth login "
                "or set HF_TOKEN to a token with the needed access"
            ) from None
        raise HyperAdaptError(f"the Hub answered {status} to {action} {where}: {message}") from None
    except _network_errors() as err:
        raise HyperAdaptError(
            f"cannot {action} {where}: network error talking to {_endpoint()} ({type(err).__name__}: "
            f"{_short(err)}); check the connection and HF_ENDPOINT, then try again"
        ) from None
    except OSError as err:
        if "Consistency check failed" in str(err):
            raise HyperAdaptError(
                f"the download of {where} was truncated ({_short(err)}); nothing was loaded, run the command "
                "again to download it anew"
            ) from None
        raise


def _network_errors() -> tuple[type[BaseException], ...]:
    """The transport errors of the HTTP client that this huggingface_hub uses."""
    errors: list[type[BaseException]] = []
    for module, name in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "ConnectionError"),
    ):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(getattr(__import__(module), name))
    return tuple(errors) or (ConnectionError,)


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _filename_of(err: BaseException) -> str:
    response = getattr(err, "response", None)
    if response is not None:
        from urllib.parse import unquote

        url = str(response.request.url) if response.request is not None else ""
        if "/resolve/" in url:
            return unquote(url.split("/resolve/", 1)[1].split("/", 1)[-1].split("?", 1)[0])
    return "(a required file)"


# -- downloading -------------------------------------------------------------------------------


def _check_hypernetwork_listing(repo_id: str, where: str, files: dict[str, Any]) -> None:
    """Refuse a repository that is not a hypernetwork, or that offers only pickled weights."""
    if CONFIG_NAME not in files:
        if ADAPTER_CONFIG in files:
            raise HyperAdaptError(
                f"{where} is a peft adapter repository, not a hypernetwork: load it with "
                f"PeftModel.from_pretrained(base_model, {repo_id!r})"
            )
        listed = ", ".join(sorted(files)) or "nothing"
        raise HyperAdaptError(
            f"{where} has no {CONFIG_NAME}: it is not a hyperadapt hypernetwork (it holds {listed})"
        )
    if WEIGHTS_NAME not in files:
        pickles = sorted(name for name in files if name.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise HyperAdaptError(
                f"{where} offers only pickled weights ({', '.join(pickles)}); hyperadapt loads safetensors only, "
                f"since unpickling can run arbitrary code. Ask for a {WEIGHTS_NAME}, or convert the file yourself "
                "where you trust it"
            )
        raise HyperAdaptError(f"{where} has no {WEIGHTS_NAME}, the hypernetwork's weights")


def _file_hash(path: Path, algorithm: str) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256() if algorithm == "sha256" else hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_download(
    path: str | Path, expected_oid: str | None, expected_size: int | None, where: str
) -> None:
    """Check a downloaded file against the Hub's listing; drop it from the cache if it differs.

    Args:
        path: The file ``hf_hub_download`` returned (a cache snapshot entry).
        expected_oid: The LFS sha256 or the git blob id the Hub lists; None uses the cache's own
            record (the blob is named by the ETag it was downloaded under).
        expected_size: The size the Hub lists, if known.
        where: ``"repo: file"``, for the message.

    Raises:
        HyperAdaptError: when the size or hash differ.
    """
    path = Path(path)
    blob = Path(os.path.realpath(path))
    oid = (expected_oid or blob.name).lower()
    if len(oid) not in (40, 64) or any(c not in "0123456789abcdef" for c in oid):
        return  # nothing to compare with (a copied cache without blob names)
    size = blob.stat().st_size
    problem = None
    if expected_size is not None and size != expected_size:
        problem = f"{size} bytes instead of {expected_size}"
    elif _file_hash(blob, "sha256" if len(oid) == 64 else "git-sha1") != oid:
        problem = f"its {'sha256' if len(oid) == 64 else 'git blob id'} is not {oid}"
    if problem:
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            blob.unlink()
        raise HyperAdaptError(
            f"the download of {where} is corrupt or truncated ({problem}); nothing was loaded and the file was "
            "removed from the cache, run the command again to download it anew"
        )


def download_hypernetwork(
    repo_id: str,
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path:
    """Download a hypernetwork repository into the Hub cache and return its snapshot folder.

    The repository's file list is read first: a repository without ``config.json`` or with only
    pickled weights is refused before any weight is fetched. The files are then downloaded at the
    listed commit and checked against the listed sizes and hashes. Offline (``HF_HUB_OFFLINE=1``
    or ``local_files_only``), the cached files are used and checked against the cache's record.

    Raises:
        HyperAdaptError: for a missing repository, revision or file, pickles only, a network
            failure, or a corrupt download; one line each.
    """
    return download_files(
        repo_id,
        (CONFIG_NAME, WEIGHTS_NAME),
        _OPTIONAL_FILES,
        _check_hypernetwork_listing,
        revision=revision,
        token=token,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
    )


def download_files(
    repo_id: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    check_listing: Callable[[str, str, dict[str, Any]], None],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path:
    """Download the named files of a repository, checked, and return their snapshot folder.

    ``check_listing(repo_id, where, files)`` sees the repository's file list before anything is
    downloaded and raises for a repository of the wrong kind; see `download_hypernetwork`.
    """
    from huggingface_hub import HfApi, constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    offline = local_files_only or constants.is_offline_mode()
    where = repo_id + (f" (revision {revision!r})" if revision else "")
    with hub_errors(repo_id, revision):
        listing: dict[str, Any] = {}
        unreachable: BaseException | None = None
        if not offline:
            try:
                info = HfApi(token=token).model_info(
                    repo_id, revision=revision, files_metadata=True, token=token
                )
            except _network_errors() as err:
                unreachable, offline = err, True  # the Hub is out of reach: use the cache if it has it
                logger.warning("the Hub is out of reach (%s); looking for %s in the local cache", err, where)
            else:
                listing = {s.rfilename: s for s in info.siblings or []}
                check_listing(repo_id, where, listing)
        paths: dict[str, str] = {}
        for name in (*required, *optional):
            if not offline and name not in listing:
                continue
            try:
                paths[name] = hf_hub_download(
                    repo_id,
                    name,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download and not offline,
                    local_files_only=offline,
                    token=token,
                )
            except EntryNotFoundError:
                if name in optional:
                    continue
                if unreachable is not None:
                    raise HyperAdaptError(
                        f"cannot download {where}: network error talking to {_endpoint()} "
                        f"({type(unreachable).__name__}: {_short(unreachable)}) and it is not in the local "
                        "cache; check the connection and HF_ENDPOINT, then try again"
                    ) from None
                raise
            sibling = listing.get(name)
            oid = size = None
            if sibling is not None:
                oid = sibling.lfs.sha256 if sibling.lfs else sibling.blob_id
                size = sibling.lfs.size if sibling.lfs else sibling.size
            verify_download(paths[name], oid, size, f"{repo_id}: {name}")
    return Path(paths[required[0]]).parent


# -- the hypernetwork as a Hub object --------------------------------------------------------


class HyperNetworkHubMixin(PyTorchModelHubMixin):
    """`PyTorchModelHubMixin` with hyperadapt's repository layout, cards and safety checks.

    ``save_pretrained`` also writes ``hyperadapt.json`` and a card from the template;
    ``push_to_hub(repo_id, private=..., revision=...)`` creates the repository (and the branch)
    and uploads all of it in one commit; ``from_pretrained(repo_id_or_path, revision=...)``
    downloads through `download_hypernetwork` (listing checks, hash checks) and loads the
    safetensors weights strictly.
    """

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        manifest = hypernetwork_manifest(self)  # type: ignore[arg-type]
        (Path(save_directory) / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        from .cards import hypernetwork_card  # cards import hub: import late

        return hypernetwork_card(self, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        revision: str | None = None,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        **model_kwargs,
    ):
        """Load from a folder or a Hub repo id (safetensors only, strict).

        Raises:
            HyperAdaptError: a missing repository, revision or file, pickled weights only, a
                network failure, a corrupt download or damaged weights.
        """
        ref = str(pretrained_model_name_or_path)
        source, hub_ref = Path(ref), None
        if not source.is_dir():
            source = download_hypernetwork(
                ref,
                revision,
                token=token,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
            )
            hub_ref = {"repo_id": ref, "revision": revision, "commit": source.name}
        try:
            check_config_file(source)
            model = super().from_pretrained(str(source), **model_kwargs)
        except HyperAdaptError as err:
            if hub_ref is None:
                raise
            # Name the repository, not the cache folder it was downloaded to.
            named = ref + (f" (revision {revision!r})" if revision else "")
            raise HyperAdaptError(str(err).replace(str(source), named)) from None
        model.source_dir = source
        model.hub_ref = hub_ref
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        revision: str | None = None,
        branch: str | None = None,
        commit_message: str | None = None,
        token: str | bool | None = None,
        metrics: dict[str, dict[str, float]] | None = None,
        recipe: Any = None,
        **unused: Any,
    ) -> str:
        """Upload this hypernetwork with its card to ``repo_id`` (created if needed).

        Args:
            repo_id: ``namespace/name``.
            private: Create the repository private (an existing one keeps its visibility).
            revision: The branch to commit to (created from ``main`` if missing); ``branch`` is an
                alias.
            commit_message: The commit's summary.
            token: A Hub token (default: the logged-in one or ``HF_TOKEN``).
            metrics: ``{task: {metric: value}}`` for the card (default: from the card saved with
                the checkpoint it was loaded from).
            recipe: The training recipe for the card (default: the saved ``recipe.yaml``).

        Returns:
            The commit URL.
        """
        if unused:
            logger.debug("push_to_hub: ignoring %s", sorted(unused))
        return push_hypernetwork(
            self,  # type: ignore[arg-type]
            repo_id,
            private=private,
            revision=revision or branch,
            commit_message=commit_message,
            token=token,
            metrics=metrics,
            recipe=recipe,
        )


def check_config_file(folder: Path) -> None:
    """Refuse a ``config.json`` that is not a JSON object, before anything reads its keys.

    Raises:
        HyperAdaptError: naming the file; the checkpoint is damaged.
    """
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return  # reported by the loader, which knows whether the folder is a hypernetwork at all
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HyperAdaptError(
            f"{folder}/{CONFIG_NAME} is not valid JSON ({getattr(err, 'msg', err)}); the checkpoint is damaged"
        ) from None
    if not isinstance(config, dict):
        raise HyperAdaptError(f"{folder}/{CONFIG_NAME} is not a JSON object; the checkpoint is damaged")


def hypernetwork_manifest(hypernet: HyperNetwork) -> dict[str, Any]:
    """What ``hyperadapt.json`` holds: vocabularies, base model, adapter kind and size."""
    from .base_model import hub_id_of
    from .cards import adapter_parameters  # cards import hub: import late

    cfg = hypernet.config
    tasks = [t["name"] for t in cfg.tasks]
    languages = sorted({t.get("language", "en") for t in cfg.tasks})
    return {
        "format": "hyperadapt-hypernetwork",
        "format_version": 1,
        "vocabularies": {"tasks": tasks, "languages": languages},
        "base_model": {
            "id": hub_id_of(cfg.base_model),
            "revision": cfg.base_model_revision,
            "as_trained": cfg.base_model,
            "model_type": cfg.model_type,
        },
        "adapter": {
            "kind": getattr(cfg, "adapter", "lora"),
            "rank": cfg.lora_rank,
            "alpha": cfg.lora_alpha,
            "target_modules": list(cfg.target_modules or []),
            "parameters": adapter_parameters(cfg),
        },
        "conditioning": list(getattr(cfg, "conditioning", ["name"])),
        "head": getattr(cfg, "head", "task"),
        "text_encoder": getattr(cfg, "text_encoder", None),
    }


# -- model cards -------------------------------------------------------------------------------


# -- pushing -----------------------------------------------------------------------------------


def check_push_target(repo_id: str) -> None:
    """Refuse, before any work is done, a repo id that cannot be pushed to, or an offline Hub.

    Raises:
        HyperAdaptError: for an invalid repo id or ``HF_HUB_OFFLINE``.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import validate_repo_id

    with hub_errors(repo_id, action="push"):
        validate_repo_id(repo_id)
    if constants.is_offline_mode():
        raise HyperAdaptError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set; unset it to reach the Hub")


def _upload(
    folder: Path,
    repo_id: str,
    *,
    private: bool | None,
    revision: str | None,
    commit_message: str,
    token: str | bool | None,
) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with hub_errors(repo_id, revision, action="push"):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=folder, revision=revision, commit_message=commit_message
        )
    logger.info("pushed to %s%s: %s", repo_id, f" (branch {revision})" if revision else "", info)
    return str(getattr(info, "commit_url", info))


def push_hypernetwork(
    hypernet: HyperNetwork | str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | bool | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    recipe: Any = None,
) -> str:
    """Push a hypernetwork (loaded, or a saved folder) with a fresh card; returns the commit URL.

    A folder is loaded first, so only a complete, loadable checkpoint is pushed. The card keeps
    the evaluation results and recipe saved with the checkpoint unless ``metrics`` / ``recipe``
    are given.
    """
    from .cards import _recipe_text, card_metrics, hypernetwork_card  # cards import hub: import late

    if isinstance(hypernet, (str, Path)):
        from .runtime import load_hypernetwork

        hypernet = load_hypernetwork(hypernet)
    source = getattr(hypernet, "source_dir", None)
    if metrics is None and source is not None:
        metrics = card_metrics(source)
    if Path(hypernet.config.base_model).is_absolute() or Path(hypernet.config.base_model).exists():
        logger.warning(
            "the base model %s is a local folder: whoever pulls this hypernetwork needs the same model there",
            hypernet.config.base_model,
        )
    with tempfile.TemporaryDirectory(prefix="hyperadapt-push-") as tmp:
        staged = Path(tmp)
        hypernet.save_pretrained(staged)
        recipe_text = _recipe_text(recipe, source)
        if recipe_text is not None:
            (staged / RECIPE_NAME).write_text(recipe_text, encoding="utf-8")
        hypernetwork_card(hypernet, metrics=metrics, recipe=recipe_text, repo_id=repo_id).save(
            staged / CARD_NAME
        )
        return _upload(
            staged,
            repo_id,
            private=private,
            revision=revision,
            commit_message=commit_message or "Upload hyperadapt hypernetwork",
            token=token,
        )


def push_adapter(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | bool | None = None,
) -> str:
    """Push an exported adapter folder as a repository; returns the commit URL.

    The folder must hold ``adapter_config.json`` (a peft adapter) or ``bottleneck_config.json``
    (a bottleneck adapter), and ``adapter_model.safetensors`` (pickled adapters are refused). Its
    card's usage snippet is pointed at ``repo_id``.
    """
    from .bottleneck import BOTTLENECK_CONFIG
    from .cards import adapter_card_for_push  # cards import hub: import late

    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).is_file() and not (folder / BOTTLENECK_CONFIG).is_file():
        raise HyperAdaptError(
            f"{folder} is not an adapter folder: neither {ADAPTER_CONFIG} nor {BOTTLENECK_CONFIG} is in it"
        )
    if not (folder / ADAPTER_WEIGHTS).is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.name.endswith(PICKLE_SUFFIXES))
        what = f"only pickled weights ({', '.join(pickles)})" if pickles else f"no {ADAPTER_WEIGHTS}"
        raise HyperAdaptError(f"{folder} has {what}; hyperadapt pushes safetensors adapters only")
    with tempfile.TemporaryDirectory(prefix="hyperadapt-push-") as tmp:
        staged = Path(tmp) / "adapter"
        shutil.copytree(
            folder, staged, ignore=shutil.ignore_patterns(".*", "*.bin", "*.pt", "*.pth", "*.pkl")
        )
        adapter_card_for_push(staged, repo_id).save(staged / CARD_NAME)
        return _upload(
            staged,
            repo_id,
            private=private,
            revision=revision,
            commit_message=commit_message or "Upload adapter generated by hyperadapt",
            token=token,
        )


def _looks_like_repo_id(name: str) -> bool:
    import re

    return (
        not Path(name).is_absolute()
        and not Path(name).exists()
        and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None
    )


def push_folder(folder: str | Path, repo_id: str, **kwargs: Any) -> str:
    """Push a saved hypernetwork folder or an exported adapter folder (what ``hyperadapt push`` does)."""
    path = Path(folder)
    if not path.is_dir():
        raise HyperAdaptError(f"{folder} is not a folder: push a saved hypernetwork or an exported adapter")
    if (path / ADAPTER_CONFIG).is_file() or (path / "bottleneck_config.json").is_file():
        return push_adapter(path, repo_id, **kwargs)
    return push_hypernetwork(path, repo_id, **kwargs)
