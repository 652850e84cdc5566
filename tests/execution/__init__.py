"""Tests of the execution API (``conveyor.execution``)."""
