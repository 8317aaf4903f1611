// Command wazero_oracle prints, as JSON, what ig's wasm operator (pkg/operators/wasm) reads from a
// gadget's module with wazero: the function imports of host module "ig" (wasm.upcalls) and the
// result of gadgetAPIVersion, called after _initialize as ig does. ig's upcalls are stubs returning
// zeros; WASI is wazero's. Built inside ig's checkout through `go build -overlay`, so it uses the
// wazero version of ig's go.mod and writes nothing there (see tests_ig/test_ig_wasm.py).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

func main() {
	if err := inspect(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func inspect(path string) error {
	ctx := context.Background()
	program, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	runtime := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(256))
	compiled, err := runtime.CompileModule(ctx, program)
	if err != nil {
		return err
	}
	upcalls := []string{}
	host := runtime.NewHostModuleBuilder("ig")
	for _, imported := range compiled.ImportedFunctions() {
		module, name, _ := imported.Import()
		if module != "ig" {
			continue
		}
		upcalls = append(upcalls, name)
		results := len(imported.ResultTypes())
		stub := api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			clear(stack[:results])
		})
		host.NewFunctionBuilder().WithGoModuleFunction(stub, imported.ParamTypes(), imported.ResultTypes()).Export(name)
	}
	if _, err := host.Instantiate(ctx); err != nil {
		return err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, runtime); err != nil {
		return err
	}
	instance, err := runtime.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		return err
	}
	version, err := instance.ExportedFunction("gadgetAPIVersion").Call(ctx)
	if err != nil {
		return err
	}
	out, err := json.Marshal(map[string]any{"upcalls": upcalls, "gadgetAPIVersion": version[0]})
	fmt.Println(string(out))
	return err
}
