#!/usr/bin/env bash
# cache_dir.sh — prints nr's cache folder (sourced by the other scripts).
# Models and the Python reference environment are large and shared by every checkout of nr on
# the machine, so they live outside the work tree: $NR_CACHE, else $XDG_CACHE_HOME/nr, else
# ~/.cache/nr.
nr_cache_dir() { echo "${NR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nr}"; }
