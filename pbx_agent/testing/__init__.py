"""Fake PBXs for tests and the lab, speaking the real wire protocols over loopback TCP.

``fake_asterisk.FakeAsterisk`` is an Asterisk 22 (AMI server, FastAGI client) built from the
transcripts in ``tests/traces/asterisk-22``; ``fake_freeswitch`` is the FreeSWITCH one.
"""
