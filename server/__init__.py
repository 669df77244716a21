"""The validator as a network service: an HTTP/JSON API (and privacyIDEA's) over group-committed decisions.

An edge of the project: it imports :mod:`validator`, never the reverse.
"""
