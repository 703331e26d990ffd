#!/bin/sh
# Link the dotfiles of this repository into $HOME.
#
# Each file becomes a symbolic link to its copy here, so that editing the
# link edits the repository. A file already in the way is kept as NAME.bak.
# Running the script again changes nothing.
set -eu

repo=$(cd "$(dirname "$0")" && pwd -P)

link() {
    src="$repo/$1"
    dest="$HOME/$1"
    if [ -L "$dest" ] && [ "$(readlink "$dest")" = "$src" ]; then
        echo "ok      ~/$1"
        return 0
    fi
    mkdir -p "$(dirname "$dest")"
    if [ -e "$dest" ] || [ -L "$dest" ]; then
        mv "$dest" "$dest.bak"
        echo "kept    ~/$1.bak"
    fi
    ln -s "$src" "$dest"
    echo "linked  ~/$1"
}

link .bashrc
link .profile
link .config/git/config
for script in "$repo"/bin/*; do
    link "bin/${script##*/}"
done
