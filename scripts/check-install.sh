#!/usr/bin/env bash
# "Install truth": after a build, checks that every Debian package the build,
# the tests and the scripts really use is installed by scripts/install-deps.sh
# (CI once passed only because a package had been installed by hand).
#
#   scripts/check-install.sh BUILD_DIR [BUILD_DIR...]     (VERBOSE=1: the whole map)
#
# What it collects:
#   headers    every absolute path in the compiler's dependency files
#              (BUILD_DIR/**/*.o.d, written by GCC for CMake's Makefile
#              generator) outside the source and build trees;
#   libraries  the link lines (BUILD_DIR/**/link.txt): absolute .so/.a paths
#              and -lNAME resolved with the compiler (-print-file-name), plus
#              the GCC sanitizer runtimes of -fsanitize= builds;
#   build      the compiler, make, cmake and pkg-config of CMakeCache.txt, the
#              libraries it found and the package config files find_package read;
#   commands   what the tests and scripts run: the first word of every string
#              given to RunCommand / Shell / Popen / FindInPath / exec* / system
#              in tests/ (C++), every command word of scripts/*.sh and .ci/run
#              (a small shell lexer below), and EXTRA_COMMANDS (run indirectly);
#              tools/*.sh (the benchmarks) count against install-deps.sh --bench.
# Each file is mapped to its package with one batched dpkg -S (the path, its
# resolved path, and both with /usr/lib vs /lib, merged-usr). A package is fine
# when install-deps.sh lists it, when a listed package depends on it
# (Pre-Depends/Depends, transitively, from dpkg's database of installed
# packages: no network), or when its priority is "required" (on every Debian
# system, including the minimal container images). Anything else fails the
# check, naming the package and the file(s) that made it needed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
INSTALL_DEPS=$ROOT/scripts/install-deps.sh
PATH=$PATH:/usr/sbin:/sbin   # helpers such as mount.fuse3 live there
T0=$(date +%s%N)

# Commands the tests and scripts run without naming them in a way the scan
# below can see. Keep a reason next to each.
EXTRA_COMMANDS=(
  mount.fuse3   # `mount -t fuse` (tests/mount/cli_test.cc) runs the mount.fuse helper
)

die() { echo "check-install: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: $0 BUILD_DIR [BUILD_DIR...]"
command -v dpkg-query >/dev/null || die "dpkg-query missing: this check is for Debian"

WORK=$(mktemp -d /tmp/check-install.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
USED=$WORK/used   # kind \t tier \t path \t why   (tier: main or bench)
: >"$USED"
add() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$USED"; }

# --------------------------------------------------------------------------
# 1. The build trees: headers, libraries, build tools.
declare -A TREES=(["$ROOT"]=1)
for b in "$@"; do
  [ -f "$b/CMakeCache.txt" ] || die "$b is not a CMake build directory (no CMakeCache.txt): build first"
  b=$(cd "$b" && pwd)
  TREES[$b]=1
  src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$b/CMakeCache.txt")
  if [ -n "$src" ]; then TREES[$src]=1; fi
done
outside() {  # stdin: absolute paths -> those outside every source and build tree
  local t pat=''
  for t in "${!TREES[@]}"; do pat+="${pat:+|}^$(printf '%s' "$t" | sed 's/[]\/$*.^[]/\\&/g')/"; done
  grep -Ev "$pat" || true
}

for b in "$@"; do
  b=$(cd "$b" && pwd)
  # Headers. CMake 3.25's Makefile generator has GCC write one depfile per
  # object (-MD -MT obj -MF obj.d) and keeps it after merging it into
  # compiler_depend.make.
  find "$b" -name '*.o.d' -type f >"$WORK/depfiles"
  [ -s "$WORK/depfiles" ] || die "no compiler dependency files (*.o.d) under $b: build it first (Makefile generator, GCC or clang)"
  # In include order, so that a package's first header is one the project
  # includes itself; /x/../ normalized (GCC's own include dirs), symlinks kept.
  xargs -d '\n' cat <"$WORK/depfiles" |
    sed -e 's/\\$//' -e 's/^[^ ]*\.o: *//' | tr ' ' '\n' | grep '^/' | awk '!seen[$0]++' |
    xargs -r -d '\n' realpath -s -m -- | outside | awk '!seen[$0]++ {print "header\tmain\t" $0 "\t" $0}' >>"$USED"

  # Libraries and the tools of the link lines.
  compiler_id=$(sed -n 's/^set(CMAKE_CXX_COMPILER_ID "\(.*\)")$/\1/p' "$b"/CMakeFiles/*/CMakeCXXCompiler.cmake 2>/dev/null | head -1)
  find "$b" -name link.txt -type f | while IFS= read -r lt; do
    rel=${lt#"$b"/}
    read -r -a words <"$lt" || true
    [ ${#words[@]} -gt 0 ] || continue
    tool=${words[0]}
    case $tool in /*) add build main "$tool" "$tool, link step of $rel" ;; esac
    for w in "${words[@]:1}"; do
      case $w in
        -l*) echo "${w#-l}	$tool	$rel" >>"$WORK/lflags" ;;
        -fsanitize=*)
          [ "$compiler_id" = GNU ] || continue
          for s in $(echo "${w#-fsanitize=}" | tr ',' ' '); do
            case $s in address) r=asan ;; thread) r=tsan ;; undefined) r=ubsan ;; leak) r=lsan ;; *) continue ;; esac
            echo "$r	$tool	$rel ($w)" >>"$WORK/lflags"
          done ;;
        /*.so | /*.so.* | /*.a) add library main "$w" "$w in $rel" ;;
      esac
    done
  done
  if [ -s "$WORK/lflags" ]; then
    sort -u -t$'\t' -k1,2 "$WORK/lflags" | while IFS=$'\t' read -r name tool rel; do
      f=$("$tool" -print-file-name="lib$name.so")
      [ "${f#/}" != "$f" ] || f=$("$tool" -print-file-name="lib$name.a")
      if [ "${f#/}" != "$f" ]; then
        add library main "$(realpath -s -m "$f")" "-l$name = $f in $rel"
      else
        add missing main "lib$name" "-l$name in $rel: $tool finds neither lib$name.so nor lib$name.a"
      fi
    done
    rm -f "$WORK/lflags"
  fi

  # CMakeCache.txt: the tools CMake runs, what find_package/pkg_check_modules found.
  while IFS='=' read -r key val; do
    name=${key%%:*}
    case $name in
      CMAKE_CXX_COMPILER | CMAKE_C_COMPILER | CMAKE_MAKE_PROGRAM | CMAKE_COMMAND | PKG_CONFIG_EXECUTABLE)
        if [ -f "$val" ]; then add build main "$val" "$name=$val in CMakeCache.txt"; fi ;;
      *_LIBRARY | pkgcfg_lib_*)
        if [ -f "$val" ]; then add library main "$val" "$name=$val in CMakeCache.txt"; fi ;;
      *_DIR)
        for f in "$val"/*[Cc]onfig.cmake "$val"/*-config.cmake; do
          if [ -f "$f" ]; then add build main "$f" "$f, find_package $name in CMakeCache.txt"; fi
        done ;;
    esac
  done < <(grep -E '^[A-Za-z_][A-Za-z0-9_]*:(FILEPATH|PATH|INTERNAL|STRING)=/' "$b/CMakeCache.txt")
done
# keep only files outside the trees
awk -F'\t' '{print $3}' "$USED" | sort -u | outside >"$WORK/keep"
awk -F'\t' 'FILENAME == ARGV[1] {keep[$0] = 1; next} keep[$3] || $1 == "missing"' "$WORK/keep" "$USED" >"$USED.k" && mv "$USED.k" "$USED"

# --------------------------------------------------------------------------
# 2. Commands. Each source prints "command \t where".
cd "$ROOT"
# 2a. tests/: the first word of a string literal passed to a function that runs
# a command (RunCommand({"sqlite3", ...}), Shell({"cp", ...}), Popen("du -sk ..."),
# FindInPath("fio"), execvp("x", ...), system("x ..."), SpawnLogged({"x", ...})).
# shellcheck disable=SC2016  # perl code
find tests -type f \( -name '*.cc' -o -name '*.h' \) | sort | xargs -d '\n' perl -0777 -ne '
  while (/\b([A-Za-z_]*(?:Run|Command|Shell|Popen|popen|system|exec[lv]p?e?|Spawn[A-Za-z]*|FindInPath))\s*\(\s*\{?\s*"([^"\s]+)/g) {
    my ($fn, $cmd) = ($1, $2);
    my $line = 1 + (substr($_, 0, pos($_)) =~ tr/\n//);
    print "$cmd\t$ARGV:$line, $fn()\n";
  }' >"$WORK/cmd.tests"

# 2b. shell scripts: every word in command position (first word of a simple
# command, after ; & | && || ( $( ` then do else ! and case patterns),
# skipping quotes' contents, assignments, redirections, here-documents,
# arithmetic and [[ ]]; the values of CC=/CXX= assignments count as commands.
# Words that are functions of the script, builtins or keywords are dropped below.
read -r -d '' SH_LEXER <<'PERL' || true
use strict; use warnings;
my ($s, $i, $n, $line, $file, %funcs);
my %keep_cmdpos = map { $_ => 1 } qw(if then else elif do while until ! { time);
my %end_cmdpos = map { $_ => 1 } qw(fi done } ]] ;;);
my %wrapper = map { $_ => 1 } qw(sudo env xargs nohup nice exec command);
my %optarg = (xargs => qr/^-[adEILnPs]$/, env => qr/^-[uCS]$/, sudo => qr/^-[ugCDhpRTU]$/, nice => qr/^-n$/);
sub emit { my ($w, $l) = @_; print "$w\t$file:$l\n" }
sub skip_balanced {   # from after the opening ((: to after the matching ))
  my $depth = 2;
  while ($i < $n && $depth > 0) {
    my $c = substr($s, $i++, 1);
    $line++ if $c eq "\n";
    $depth++ if $c eq '('; $depth-- if $c eq ')';
  }
}
sub skip_braces {     # from after ${ to after the matching }
  my $depth = 1;
  while ($i < $n && $depth > 0) {
    my $c = substr($s, $i++, 1);
    if ($c eq '\\') { $i++; next }
    $line++ if $c eq "\n";
    if ($c eq '$' && substr($s, $i, 2) eq '((') { $i += 2; skip_balanced(); next }
    if ($c eq '$' && substr($s, $i, 1) eq '(') { $i++; parse(')'); next }
    $depth++ if $c eq '{'; $depth-- if $c eq '}';
  }
}
sub dollar {          # at a $: expansions; returns 1 if it consumed something
  my $d = substr($s, $i + 1, 1);
  if (substr($s, $i + 1, 2) eq '((') { $i += 3; skip_balanced(); return 1 }
  if ($d eq '(') { $i += 2; parse(')'); return 1 }
  if ($d eq '{') { $i += 2; skip_braces(); return 1 }
  if ($d eq "'") { $i += 2; while ($i < $n && substr($s, $i, 1) ne "'") { $i++ if substr($s, $i, 1) eq '\\'; $i++ } $i++; return 1 }
  $i++; return 1;
}
sub parse {           # a command list, until $end (')' or '`') or EOF
  my ($end, $array) = @_;
  my ($word, $lit, $wline, $cmdpos, $skipnext, $dbr, $wrap) = ('', 1, $line, 1, 0, 0, 0);
  my @case;            # stack: 'head', 'pat', 'body'
  my $for = 0; my @heredocs;
  my $finish = sub {
    my $w = $word; my $l = $lit; $word = ''; $lit = 1;
    return if $w eq '' && $l;
    return if $array;
    if ($skipnext) { $skipnext = 0; return }
    if ($dbr) { $dbr = 0 if $w eq ']]'; return }
    if (@case && $case[-1] eq 'head') { $case[-1] = 'pat' if $w eq 'in'; return }
    if (@case && $case[-1] eq 'pat') { pop @case if $w eq 'esac'; return }
    if ($for) { if ($w eq 'do') { $for = 0; $cmdpos = 1 } return }
    return unless $cmdpos;
    if ($l && $w =~ /^([A-Za-z_]\w*)(\[[^]]*\])?\+?=(.*)$/s) {
      emit($3, $wline) if ($1 eq 'CC' || $1 eq 'CXX') && $3 ne '';
      return;
    }
    if ($l && $keep_cmdpos{$w}) { return }
    if ($l && $w eq 'case') { push @case, 'head'; $cmdpos = 0; return }
    if ($l && ($w eq 'for' || $w eq 'select')) { $for = 1; $cmdpos = 0; return }
    if ($l && $w eq 'esac' && @case) { pop @case; $cmdpos = 0; return }
    if ($l && $end_cmdpos{$w}) { $cmdpos = 0; return }
    if ($l && $w eq '[[') { $dbr = 1; $cmdpos = 0; return }
    if ($wrap && $w =~ /^-/) {
      $cmdpos = 0 if $wrap eq 'command' && $w =~ /^-[vV]/;
      $skipnext = 1 if $optarg{$wrap} && $w =~ $optarg{$wrap};   # an option's argument
      return;
    }
    if ($wrap eq 'env' && $w =~ /^[A-Za-z_]\w*=/) { return }
    emit($w, $wline) if $l;
    $cmdpos = 0; $wrap = 0;
    if ($l && $wrapper{$w}) { $cmdpos = 1; $wrap = $w }
  };
  my $sep = sub { $finish->(); $cmdpos = 1; $wrap = 0 };
  while ($i < $n) {
    my $c = substr($s, $i, 1);
    if (defined $end && $c eq $end && !$dbr) {
      if ($end eq ')' && @case && $case[-1] eq 'pat') { $finish->(); $case[-1] = 'body'; $cmdpos = 1; $i++; next }
      $finish->(); $i++; return;
    }
    if ($c eq '#' && $word eq '' && $lit) { $i++ while $i < $n && substr($s, $i, 1) ne "\n"; next }
    if ($c eq "\n") {
      $finish->(); $line++; $i++;
      for my $h (@heredocs) {          # skip each pending here-document body
        my ($delim, $tabs) = @$h;
        while ($i < $n) {
          my $e = index($s, "\n", $i); $e = $n if $e < 0;
          my $l = substr($s, $i, $e - $i); $i = $e + 1; $line++;
          $l =~ s/^\t+// if $tabs;
          last if $l eq $delim;
        }
      }
      @heredocs = ();
      $cmdpos = 1 unless @case && $case[-1] ne 'body'; $wrap = 0;
      $cmdpos = 0 if $for;
      next;
    }
    if ($c eq ' ' || $c eq "\t") { $finish->(); $i++; next }
    if ($c eq '\\') {
      if (substr($s, $i + 1, 1) eq "\n") { $i += 2; $line++; next }
      $word .= substr($s, $i + 1, 1); $wline = $line if length($word) == 1; $i += 2; next;
    }
    if ($c eq "'") {
      $wline = $line if $word eq '';
      my $e = index($s, "'", $i + 1); $e = $n if $e < 0;
      my $q = substr($s, $i + 1, $e - $i - 1); $line += ($q =~ tr/\n//);
      $word .= $q; $word = "''" if $word eq ''; $i = $e + 1; next;
    }
    if ($c eq '"') {
      $wline = $line if $word eq '';
      $i++; my $q = '';
      while ($i < $n) {
        my $d = substr($s, $i, 1);
        if ($d eq '"') { $i++; last }
        if ($d eq '\\') { $q .= substr($s, $i + 1, 1); $i += 2; next }
        if ($d eq '$') { $lit = 0; dollar(); next }
        if ($d eq '`') { $lit = 0; $i++; parse('`'); next }
        $line++ if $d eq "\n";
        $q .= $d; $i++;
      }
      $word .= $q; $word = '""' if $word eq ''; next;
    }
    if ($c eq '$') { $wline = $line if $word eq ''; $lit = 0; $word .= '$'; dollar(); next }
    if ($c eq '`') { $lit = 0; $word .= '`'; $i++; parse('`'); next }
    if ($dbr && $c =~ /[()<>|&]/) { $word .= $c; $i++; next }   # operators of [[ ]]
    if ($c eq '<' || $c eq '>' || ($c eq '&' && substr($s, $i + 1, 1) eq '>')) {
      if ($word =~ /^\d*$/ && $lit) { $word = '' } else { $finish->() }
      my $op = ''; $op .= substr($s, $i++, 1) while $i < $n && substr($s, $i, 1) =~ /[<>&|-]/;
      if ($op =~ /^<<(-?)$/) {          # here-document: <<EOF, <<-'EOF', <<"EOF"
        my $tabs = $1; $i++ while substr($s, $i, 1) eq ' ';
        my $d = ''; while ($i < $n && substr($s, $i, 1) !~ /[\s;&|<>()]/) { $d .= substr($s, $i++, 1) }
        $d =~ s/['"\\]//g; push @heredocs, [$d, $tabs]; next;
      }
      if ($op =~ /&-?$/ && substr($s, $i, 1) =~ /[\d-]/) { $i++ while substr($s, $i, 1) =~ /[\d-]/; next }
      if (($op eq '<' || $op eq '>') && substr($s, $i, 1) eq '(') { $i++; parse(')'); next }   # <(cmd) >(cmd)
      $skipnext = 1; next;
    }
    if ($c eq ';') {
      if (substr($s, $i + 1, 1) eq ';') {
        $finish->(); $i += 2; $i++ if substr($s, $i, 1) eq '&';
        $case[-1] = 'pat' if @case; $cmdpos = 0; next;
      }
      $sep->(); $i++; next;
    }
    if ($c eq '|' || $c eq '&') {
      if (@case && $case[-1] eq 'pat') { $finish->(); $i++; next }
      $sep->(); $i++; $i++ if substr($s, $i, 1) eq $c; next;
    }
    if ($c eq '(') {
      if ($word ne '' && $lit && $word =~ /=$/) {   # array assignment NAME=( ... ): no command
        $finish->(); $i++; parse(')', 1); next;    # but its $(...) are lexed
      }
      if ($word ne '' && substr($s, $i) =~ /^\(\s*\)/) {   # name() { ...: a function
        $funcs{$word} = 1; $word = ''; $lit = 1; $i = index($s, ')', $i) + 1; $cmdpos = 1; next;
      }
      if (@case && $case[-1] eq 'pat') { $i++; next }
      if (substr($s, $i + 1, 1) eq '(') { $finish->(); $i += 2; skip_balanced(); $cmdpos = 0; next }
      $sep->(); $i++; next;
    }
    if ($c eq ')') {                     # a subshell ends (or a case pattern)
      if (@case && $case[-1] eq 'pat') { $finish->(); $case[-1] = 'body'; $cmdpos = 1; $i++; next }
      $finish->(); $cmdpos = 0; $i++; next;
    }
    $wline = $line if $word eq '';
    $word .= $c; $i++;
  }
  $finish->();
}
for my $f (@ARGV) {
  $file = $f;
  open my $fh, '<', $file or die "$file: $!"; local $/; $s = <$fh>; close $fh;
  $s =~ s/\A#![^\n]*//;
  ($i, $n, $line, %funcs) = (0, length $s, 1);
  $funcs{$1} = 1 while $s =~ /^\s*(?:function\s+)?([A-Za-z_][\w.-]*)\s*\(\s*\)/mg;
  parse(undef);
  print "$_\t$file:function\n" for sort keys %funcs;
}
PERL
{ compgen -b; compgen -k; } | sort -u >"$WORK/builtins"
shell_commands() {  # files... -> "command \t file:line", functions/builtins/keywords dropped
  perl -e "$SH_LEXER" "$@" >"$WORK/sh.raw"
  # a function of a file named *-lib.sh (tools/bench-lib.sh, sourced by the
  # others) is a function in every file
  awk -F'\t' 'FNR == 1 {pass++}
               pass == 1 {builtin[$1] = 1; next}
               {split($2, a, ":")}
               pass == 2 {if ($2 ~ /:function$/) { fn[a[1] SUBSEP $1] = 1; if (a[1] ~ /-lib\.sh$/) libfn[$1] = 1 }; next}
               $2 ~ /:function$/ || (a[1] SUBSEP $1) in fn || ($1 in libfn) || ($1 in builtin) {next}
               $1 ~ /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/ || $1 ~ /^\// {print}' "$WORK/builtins" "$WORK/sh.raw" "$WORK/sh.raw"
}
scripts=(scripts/*.sh .ci/run)
shell_commands "${scripts[@]}" >"$WORK/cmd.scripts"
bench_scripts=(tools/*.sh)
if [ -e "${bench_scripts[0]}" ]; then shell_commands "${bench_scripts[@]}" >"$WORK/cmd.bench"; else : >"$WORK/cmd.bench"; fi
for c in "${EXTRA_COMMANDS[@]}"; do printf '%s\tEXTRA_COMMANDS in scripts/check-install.sh\n' "$c"; done >"$WORK/cmd.extra"

nbench_missing=0 bench_missing=''
resolve_commands() {  # tier file
  local tier=$1 w where p
  sort -u -t$'\t' -k1,1 "$2" >"$2.u"
  while IFS=$'\t' read -r w where; do
    p=$(type -P -- "$w" 2>/dev/null || true)
    if [ -z "$p" ]; then
      if [ "$tier" = bench ]; then bench_missing+=" $w"; nbench_missing=$((nbench_missing + 1)); continue; fi
      add missing main "$w" "command $w (run at $where) is not installed: install it and add its package to scripts/install-deps.sh"
      continue
    fi
    add command "$tier" "$p" "command $w at $where"
  done <"$2.u"
}
cat "$WORK/cmd.tests" "$WORK/cmd.scripts" "$WORK/cmd.extra" >"$WORK/cmd.main"
resolve_commands main "$WORK/cmd.main"
# a command the main tier already checks is not checked again as a bench one
awk -F'\t' 'FILENAME == ARGV[1] {seen[$1] = 1; next} !seen[$1]' "$WORK/cmd.main" "$WORK/cmd.bench" >"$WORK/cmd.bench2"
resolve_commands bench "$WORK/cmd.bench2"

# once per file (the first reason found), every problem
awk -F'\t' '$1 == "missing" || !seen[$1 FS $2 FS $3]++' "$USED" >"$USED.u" && mv "$USED.u" "$USED"

# --------------------------------------------------------------------------
# 3. Files -> packages: one dpkg -S for every candidate path.
awk -F'\t' '$1 != "missing" {print $3}' "$USED" | sort -u >"$WORK/paths"
xargs -r -d '\n' realpath -m -- <"$WORK/paths" >"$WORK/paths.real"   # one line per path
# path \t candidate, in order of preference: the path, its other merged-usr
# spelling, the resolved path, its other spelling
paste "$WORK/paths" "$WORK/paths.real" | awk -F'\t' '
  function other(p) {
    if (p ~ /^\/usr\/(lib|lib32|lib64|bin|sbin)\//) return substr(p, 5)
    if (p ~ /^\/(lib|lib32|lib64|bin|sbin)\//) return "/usr" p
    return ""
  }
  { n = split($1 "\t" other($1) "\t" $2 "\t" other($2), c, "\t")
    for (k = 1; k <= n; k++) if (c[k] != "" && !seen[$1 SUBSEP c[k]]++) print $1 "\t" c[k] }' >"$WORK/cands"
cut -f2 "$WORK/cands" | sort -u | grep -v '[][*?\\]' | LC_ALL=C xargs -r -d '\n' dpkg -S 2>/dev/null |
  grep -v '^diversion by ' >"$WORK/dpkg" || true
# "pkg1:amd64, pkg2: /path" -> candidate \t pkg1 pkg2
awk '{ i = index($0, ": /"); pk = substr($0, 1, i - 1); path = substr($0, i + 2)
       gsub(/:[a-z0-9_-]+/, "", pk); gsub(/, /, " ", pk); print path "\t" pk }' "$WORK/dpkg" >"$WORK/owner"

# --------------------------------------------------------------------------
# 4. Which packages are fine: listed (and everything they pull in), or required.
"$INSTALL_DEPS" --list >"$WORK/listed.main" || die "$INSTALL_DEPS --list failed"
"$INSTALL_DEPS" --list --bench >"$WORK/listed.bench" || die "$INSTALL_DEPS --list --bench failed"
dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\t${Priority}\t${Pre-Depends}, ${Depends}\t${Provides}\n' >"$WORK/status"
closure() {  # listed-file [annotate] -> "pkg \t why" for every acceptable installed package
  awk -F'\t' -v annotate="${2:-0}" '
    FILENAME == ARGV[1] { listed[++nl] = $1; next }
    $2 !~ /^.i/ { next }
    {
      inst[$1] = 1; if ($3 == "required") req[$1] = 1
      deps[$1] = deps[$1] ", " $4
      np = split($5, pv, /, */)
      for (k = 1; k <= np; k++) { v = pv[k]; sub(/ .*/, "", v); sub(/:.*/, "", v); if (v != "") prov[v] = prov[v] " " $1 }
    }
    function base(a) { gsub(/\(.*\)/, "", a); gsub(/[ \t]/, "", a); sub(/:.*/, "", a); return a }
    END {
      qh = 1; qt = 0
      for (k = 1; k <= nl; k++) if (inst[listed[k]] && !(listed[k] in ok)) { ok[listed[k]] = "listed"; q[++qt] = listed[k] }
      while (qh <= qt) {
        p = q[qh++]
        nc = split(deps[p], cl, /, */)
        for (c = 1; c <= nc; c++) {
          if (cl[c] ~ /^[ \t]*$/) continue
          na = split(cl[c], alt, /\|/)
          for (a = 1; a <= na; a++) {          # the first alternative that is installed
            name = base(alt[a]); cand = ""
            if (inst[name]) cand = name
            else if (name in prov) cand = prov[name]
            if (cand == "") continue
            nn = split(cand, cs, " ")
            for (x = 1; x <= nn; x++) {
              if (!(cs[x] in ok)) { ok[cs[x]] = "dependency of " ok_root(p); root[cs[x]] = ok_root(p); q[++qt] = cs[x] }
              else if (ok[cs[x]] == "listed" && cs[x] != ok_root(p)) also[cs[x]] = ok_root(p)
            }
            break
          }
        }
      }
      for (p in ok) print p "\t" ((annotate && (p in also)) ? "dependency of " also[p] : ok[p])
      for (p in req) if (!(p in ok)) print p "\tpriority required"
    }
    function ok_root(p) { return (p in root) ? root[p] : p }
  ' "$1" "$WORK/status"
}
closure "$WORK/listed.main" >"$WORK/ok.main"
closure "$WORK/listed.bench" >"$WORK/ok.bench"

# --------------------------------------------------------------------------
# 5. The verdict.
awk -F'\t' -v verbose="${VERBOSE:-0}" -v counts="$WORK/counts" -v fail="$WORK/fail" '
  FILENAME == ARGV[1] { okm[$1] = $2; next }
  FILENAME == ARGV[2] { okb[$1] = $2; next }
  FILENAME == ARGV[3] { cands[$1] = cands[$1] "\t" $2; next }
  FILENAME == ARGV[4] { owner[$1] = $2; next }
  {
    kind = $1; tier = $2; path = $3; why = $4
    if (kind == "missing") { print "\t" why > fail; next }
    count[kind]++
    nc = split(substr(cands[path], 2), cs, "\t"); own = ""
    for (c = 1; c <= nc && own == ""; c++) if (cs[c] in owner) own = owner[cs[c]]
    if (own == "") { print "\t" why " belongs to no Debian package (installed by hand?)" > fail; next }
    np = split(own, ps, " "); good = ""
    for (k = 1; k <= np; k++) {
      if (tier == "main" && (ps[k] in okm)) good = ps[k] " (" okm[ps[k]] ")"
      if (tier == "bench" && (ps[k] in okb)) good = ps[k] " (" okb[ps[k]] ")"
    }
    if (good != "") {
      pk = good; sub(/ .*/, "", pk); pkgs[pk] = 1
      if (verbose == 1) print kind "\t" why "\t-> " good
      next
    }
    key = ps[1] SUBSEP tier
    if (!(key in need)) { order[++nn] = key; need[key] = why; more[key] = 0 } else more[key]++
  }
  END {
    for (k = 1; k <= nn; k++) {
      split(order[k], pt, SUBSEP); p = pt[1]; tier = pt[2]; m = more[order[k]]
      msg = p " (for " need[order[k]] (m > 0 ? " and " m " more file" (m > 1 ? "s" : "") : "") ")"
      if (tier == "main" && (p in okb)) msg = msg " is only in scripts/install-deps.sh --bench"
      else msg = msg " is not in scripts/install-deps.sh" (tier == "bench" ? " --bench" : "")
      print p "\t" msg > fail
    }
    np = 0; for (p in pkgs) np++
    printf "%d %d %d %d %d\n", count["header"], count["library"], count["build"], count["command"], np > counts
  }
' "$WORK/ok.main" "$WORK/ok.bench" "$WORK/cands" "$WORK/owner" "$USED"
if [ -s "$WORK/fail" ]; then
  # A missing package that a missing one depends on comes with it: say so.
  cut -f1 "$WORK/fail" | grep . | sort -u >"$WORK/fail.pkgs" || true
  closure "$WORK/fail.pkgs" 1 >"$WORK/fail.closure"
  awk -F'\t' 'FILENAME == ARGV[1] { if ($2 ~ /^dependency of /) dep[$1] = substr($2, 15); next }
              { print "check-install: " $2 ($1 in dep ? " (it comes with " dep[$1] ", missing too)" : "") }' \
    "$WORK/fail.closure" "$WORK/fail" >&2
  if [ -s "$WORK/fail.pkgs" ]; then
    echo "check-install: add the package(s) to PACKAGES in scripts/install-deps.sh (the file named is what needs it)" >&2
  fi
  exit 1
fi
read -r nh nl nb nc np <"$WORK/counts"
ms=$(( ($(date +%s%N) - T0) / 1000000 ))
note=''
[ "$nbench_missing" -gt 0 ] && note="; not installed, so not checked:${bench_missing} (tools/*.sh, install-deps.sh --bench)"
echo "check-install: ok: $nh headers, $nl libraries, $nb build files, $nc commands -> $np packages, each in scripts/install-deps.sh, a dependency of one, or priority required ($ms ms)$note"
