// Package log logs through the gateway's logger (target `plugin`, with the plugin's name).
//
//	log.Warn("upstream slow")
package log

import "gateway/filter/internal/abi"

// Level is a log level.
type Level uint32

// The levels.
const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)

// Log logs message at level.
func Log(level Level, message string) { abi.Log(uint32(level), message) }

// Enabled is whether a message at level would be recorded (to skip building it).
func Enabled(level Level) bool { return abi.LogEnabled(uint32(level)) }

// Trace logs at trace level.
func Trace(message string) { Log(LevelTrace, message) }

// Debug logs at debug level.
func Debug(message string) { Log(LevelDebug, message) }

// Info logs at info level.
func Info(message string) { Log(LevelInfo, message) }

// Warn logs at warn level.
func Warn(message string) { Log(LevelWarn, message) }

// Error logs at error level.
func Error(message string) { Log(LevelError, message) }

// DebugEnabled is whether debug messages are recorded.
func DebugEnabled() bool { return Enabled(LevelDebug) }
