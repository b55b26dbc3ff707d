"""Helpers shared by several test files: tiny data files and run configs, the CLI in a subprocess, the app
under AppTest, run stores with records. No tests here."""
