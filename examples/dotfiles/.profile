# shellcheck shell=sh
# ~/.profile: read by login shells.

export EDITOR=vi
export PAGER=less
export LESS=-FRX

# Scripts from this repository, linked by install.sh.
if [ -d "$HOME/bin" ]; then
    PATH="$HOME/bin:$PATH"
fi
export PATH

# A login bash does not read ~/.bashrc by itself.
if [ -n "${BASH_VERSION:-}" ] && [ -f "$HOME/.bashrc" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.bashrc"
fi
