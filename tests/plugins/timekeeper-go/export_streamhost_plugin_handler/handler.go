// Package export_streamhost_plugin_handler is the plugin's `handler` export (the package
// name is the one the generated bindings call): the commands, in package timekeeper.
package export_streamhost_plugin_handler

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"wit_component/streamhost_plugin_types"
	"wit_component/timekeeper"
)

// Process runs a batch's commands.
func Process(batch streamhost_plugin_types.Batch) witTypes.Result[witTypes.Unit, streamhost_plugin_types.PluginError] {
	return timekeeper.Process(batch)
}
