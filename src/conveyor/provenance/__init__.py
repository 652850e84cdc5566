"""What a run depends on and what it made: fingerprints of code, environment and files."""

from conveyor.provenance.fingerprints import code_hash, environment_hash, file_fingerprint

__all__ = ["code_hash", "environment_hash", "file_fingerprint"]
