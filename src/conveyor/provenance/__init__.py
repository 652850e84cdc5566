"""The run record and reproducing a run: what a run ran with, what each task read and wrote,
``conveyor reproduce`` and the rules that make figures come out byte-identical.

``record`` takes a run's record when it is created (commit, diff, environment) and each
instance's inputs when it ends; ``fingerprints`` is the one definition of "the same content"
that the record, ``reproduce`` and the result cache share; ``determinism`` sets up an attempt
(the commit's time, matplotlib without timestamps, ``conveyor.seed()``); ``reproduce`` and
``compare`` re-run a record in a fresh checkout and say where the outputs differ.
"""

from conveyor.provenance.determinism import seed

__all__ = ["seed"]
