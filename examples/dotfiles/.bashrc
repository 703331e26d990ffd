# shellcheck shell=bash
# ~/.bashrc: read by interactive bash shells that are not login shells.

# Nothing to do when not interactive.
case $- in
    *i*) ;;
    *) return ;;
esac

HISTCONTROL=ignoreboth
HISTSIZE=10000
HISTFILESIZE=20000
shopt -s histappend checkwinsize

# Prompt: user@host:folder, then the git branch when there is one.
__git_branch() {
    local branch
    branch=$(git symbolic-ref --short HEAD 2>/dev/null) || return 0
    printf ' (%s)' "$branch"
}
PS1='\u@\h:\w$(__git_branch)\$ '

alias ls='ls --color=auto'
alias ll='ls -lh'
alias la='ls -lhA'
alias gs='git status --short --branch'

if [ -f "$HOME/.bashrc.local" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.bashrc.local"
fi
