// Package export_streamhost_plugin_timer_handler is the plugin's `timer-handler` export
// (the package name is the one the generated bindings call): the fired timers, in
// package timekeeper.
package export_streamhost_plugin_timer_handler

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"wit_component/streamhost_plugin_types"
	"wit_component/timekeeper"
)

// OnTimers handles the timers that fired, earliest first.
func OnTimers(context streamhost_plugin_types.TimerContext, timers []streamhost_plugin_types.Timer) witTypes.Result[witTypes.Unit, streamhost_plugin_types.PluginError] {
	return timekeeper.OnTimers(context, timers)
}
