"""``%load_ext conveyor``: the ``%conveyor`` line magic and the ``%%conveyor`` cell magic.

- ``%conveyor run PIPELINE -p k=v [--server URL] [--no-wait]``: submit a run of one of the
  project's pipelines (``conveyor.Client``), follow it with a live bar, return its handle;
- ``%conveyor runs [PIPELINE]`` and ``%conveyor pipelines``: what ``Client`` lists;
- ``%%conveyor [PIPELINE] [-p k=v]``: the cell defines tasks and a pipeline; it runs in the
  notebook as any cell does (its definitions stay usable), and the pipeline then runs here, like
  ``conveyor run``, with a live bar. The cell is kept as a file under ``.conveyor/cells/`` (named by
  its content's hash), so its workers, a later ``conveyor retry`` and the run's record all load the
  very code that ran.

Bad input is one line (IPython's ``UsageError``), never a traceback.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from conveyor.errors import ConveyorError, ParameterError

USAGE = (
    "%conveyor run PIPELINE [-p name=value ...] [--server URL] [--no-wait] | %conveyor runs [PIPELINE] "
    "[--server URL] | %conveyor pipelines [--server URL]; %%conveyor [PIPELINE] [-p name=value ...]"
)
#: The live bar of ``%%conveyor`` is redrawn at most this often (seconds).
REDRAW = 0.3


def load(ipython: Any) -> None:
    ipython.register_magics(ConveyorMagics)


def parse(
    words: list[str], *, flags: tuple[str, ...] = ()
) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """Positional words, ``-p name=value`` pairs, and ``--server URL`` / ``flags`` options."""
    from conveyor.params import parse_assignments

    args: list[str] = []
    pairs: list[str] = []
    options: dict[str, Any] = {}
    it = iter(words)
    for word in it:
        if word in ("-p", "--param"):
            pair = next(it, None)
            if pair is None:
                raise ParameterError(f"{word} needs name=value after it; usage: {USAGE}")
            pairs.append(pair)
        elif word == "--server":
            url = next(it, None)
            if url is None:
                raise ParameterError(f"--server needs a URL after it; usage: {USAGE}")
            options["server"] = url
        elif word in flags:
            options[word.lstrip("-").replace("-", "_")] = True
        elif word.startswith("-"):
            raise ParameterError(f"unknown option {word}; usage: {USAGE}")
        else:
            args.append(word)
    return args, parse_assignments(pairs), options


def cell_file(source: str, folder: Path) -> Path:
    """The cell kept as a module named by its content (the same cell: the same file)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    path = folder / f"cell_{digest}.py"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(source)
        tmp.replace(path)
    return path


@magics_class
class ConveyorMagics(Magics):
    """The magics, each turning a ConveyorError into one line."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._clients: dict[str | None, Any] = {}

    def _client(self, server: str | None) -> Any:
        from conveyor.client import Client

        if server not in self._clients:
            self._clients[server] = Client(server)
        return self._clients[server]

    @line_magic
    def conveyor(self, line: str) -> Any:
        """%conveyor run PIPELINE -p k=v | runs [PIPELINE] | pipelines (each with [--server URL])"""
        try:
            return self._line(shlex.split(line))
        except ConveyorError as exc:
            raise UsageError(f"{type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # shlex: an unclosed quote
            raise UsageError(f"cannot read the line: {exc}; usage: {USAGE}") from None

    def _line(self, words: list[str]) -> Any:
        if not words:
            raise ParameterError(f"say what to do; usage: {USAGE}")
        command, rest = words[0], words[1:]
        args, params, options = parse(rest, flags=("--no-wait",))
        client = self._client(options.get("server"))
        if command == "run":
            if len(args) != 1:
                raise ParameterError(f"%conveyor run takes one pipeline, got {len(args)}; usage: {USAGE}")
            run = client.run(args[0], **params)
            if not options.get("no_wait"):
                run.wait()
            return run
        if params:
            raise ParameterError(f"-p is for %conveyor run, not {command}")
        if command == "runs":
            return client.runs(pipeline=args[0] if args else None)
        if command == "pipelines":
            return [p.name for p in client.pipelines()]
        raise ParameterError(f"unknown command {command!r}; usage: {USAGE}")

    @cell_magic("conveyor")  # type: ignore[arg-type]
    def conveyor_cell(self, line: str, cell: str) -> Any:
        """%%conveyor [PIPELINE] [-p k=v]: run the cell, then the pipeline it defines, here."""
        try:
            return self._cell(shlex.split(line), cell)
        except ConveyorError as exc:
            raise UsageError(f"{type(exc).__name__}: {exc}") from None
        except ValueError as exc:
            raise UsageError(f"cannot read the line: {exc}; usage: {USAGE}") from None

    def _cell(self, words: list[str], cell: str) -> Any:
        from conveyor.pipelines import PipelineDef

        args, params, _ = parse(words)
        if len(args) > 1:
            raise ParameterError(f"%%conveyor takes at most one pipeline, got {len(args)}; usage: {USAGE}")
        shell = self.shell
        assert shell is not None  # a magic runs in a shell
        result = shell.run_cell(cell, store_history=False)  # type: ignore[no-untyped-call]
        if not result.success:
            return None  # the cell's own error is shown, as for any cell
        made = {
            var: value
            for var, value in shell.user_ns.items()
            if isinstance(value, PipelineDef) and f"def {value.fn.__name__}" in cell
        }
        chosen = [var for var, p in made.items() if not args or args[0] in (var, p.name)]
        if len(chosen) != 1:
            names = ", ".join(sorted(p.name for p in made.values())) or "none"
            what = f"no pipeline {args[0]!r}" if args and not chosen else "name one pipeline"
            raise ParameterError(f"%%conveyor: {what}; the cell defines: {names}")
        path = cell_file(cell, Path(".conveyor", "cells"))
        return self._drive(f"{path}:{chosen[0]}", params)

    def _drive(self, target: str, params: dict[str, str]) -> Any:
        """Run ``target`` here to its end with a live bar, as ``conveyor run`` does; its handle."""
        from conveyor import display, engine
        from conveyor.client.handles import Run
        from conveyor.errors import RunBusy

        client = self._client(None)
        try:
            prepared = engine.prepare(target, params, from_text=True, store=engine._store(None))
        except RunBusy as busy:  # another process drives the same run: follow it
            if busy.run_id is None:
                raise
            run = Run(client.transport, busy.run_id)
            run.wait()
            return run
        run = Run(client.transport, prepared.run.id)
        if prepared.unseen:
            engine.release(prepared)
            return run
        shown = display.live(True)
        last = [0.0]

        def redraw(*_: Any) -> None:
            now = time.monotonic()
            if now - last[0] >= REDRAW:
                last[0] = now
                shown.show(display.of_run(client.transport.run(run.id, tasks=False)))

        try:
            engine.drive(prepared, on_change=redraw)
            shown.show(display.of_run(client.transport.run(run.id, tasks=False)))
        finally:
            shown.close()
        return run
