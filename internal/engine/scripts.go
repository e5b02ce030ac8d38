package engine

import (
	_ "embed"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts are the engine's atomic steps across instances; each
// file's header says what it does and why it must be atomic.
var (
	//go:embed lua/gen_read.lua
	genReadSrc    string
	genReadScript = redis.NewScript(genReadSrc)

	//go:embed lua/gen_bump.lua
	genBumpSrc    string
	genBumpScript = redis.NewScript(genBumpSrc)

	//go:embed lua/write_begin.lua
	writeBeginSrc    string
	writeBeginScript = redis.NewScript(writeBeginSrc)

	//go:embed lua/fill.lua
	fillSrc    string
	fillScript = redis.NewScript(fillSrc)

	//go:embed lua/recover.lua
	recoverSrc    string
	recoverScript = redis.NewScript(recoverSrc)
)

// Script names, as ScriptOf reports them: each is its file's name in lua/.
const (
	ScriptGenRead    = "gen_read"
	ScriptGenBump    = "gen_bump"
	ScriptWriteBegin = "write_begin"
	ScriptFill       = "fill"
	ScriptRecover    = "recover"
)

// scriptNames maps each script's source and hash to its name.
var scriptNames = func() map[string]string {
	m := make(map[string]string, 8)
	for name, s := range map[string]struct {
		src    string
		script *redis.Script
	}{
		ScriptGenRead:    {genReadSrc, genReadScript},
		ScriptGenBump:    {genBumpSrc, genBumpScript},
		ScriptWriteBegin: {writeBeginSrc, writeBeginScript},
		ScriptFill:       {fillSrc, fillScript},
		ScriptRecover:    {recoverSrc, recoverScript},
	} {
		m[s.src] = name
		m[s.script.Hash()] = name
	}
	return m
}()

// ScriptOf returns the name of the engine script cmd runs, whether sent
// with its source (EVAL) or its hash (EVALSHA), or "" for any other
// command. Redis hooks (tracing, tests) use it to tell the engine's steps
// apart.
func ScriptOf(cmd redis.Cmder) string {
	args := cmd.Args()
	if len(args) < 2 {
		return ""
	}
	switch name, _ := args[0].(string); strings.ToLower(name) {
	case "eval", "evalsha", "eval_ro", "evalsha_ro":
		body, _ := args[1].(string)
		return scriptNames[body]
	}
	return ""
}
