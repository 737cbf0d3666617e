"""Dialplan hooks served to the PBX (FastAGI on Asterisk): each module is one hook."""
