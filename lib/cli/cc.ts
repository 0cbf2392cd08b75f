/** `snowflock cc file.c [clang args] -o app.wasm`: builds a guest with the SDK on the include path. */
import { Command } from "commander";
import { compileGuest } from "../guest/cc.ts";

interface CcFlags {
  output: string;
}

export function ccCommand(): Command {
  return new Command("cc")
    .description("compile C guests for wasm32-wasi with sf.h on the include path (Debian clang)")
    .argument("<sources...>", "C files, then any clang arguments")
    .requiredOption("-o, --output <app.wasm>", "the module to write")
    .allowUnknownOption()
    .action(async (rest: string[], f: CcFlags) => {
      const sources = rest.filter((a) => !a.startsWith("-") && /\.(c|o|a)$/.test(a));
      const clangArgs = rest.filter((a) => !sources.includes(a));
      await compileGuest({
        sources,
        output: f.output,
        clangArgs,
        onProgress: (m) => console.error(`snowflock cc: ${m}`),
      });
    });
}
