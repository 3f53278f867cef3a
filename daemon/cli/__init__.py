"""The `specd` command line and the editor setup it writes (`specd config`)."""
