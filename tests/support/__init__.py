"""Launchers and fixtures for local services that several test areas share."""
