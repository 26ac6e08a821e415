// Package export_streamhost_plugin_lifecycle is the plugin's `lifecycle` export (the
// package name is the one the generated bindings call): the config, in package timekeeper.
package export_streamhost_plugin_lifecycle

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"wit_component/timekeeper"
)

// Init reads the job's `--config`: tag=T.
func Init(config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, string] {
	return timekeeper.Init(config)
}
