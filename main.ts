// Copyright (C) 2026 The Snowflock authors. SPDX-License-Identifier: GPL-2.0-or-later
/** The CLI entry: the command table is in lib/cli/program.ts; this is the one place that exits. */
import { runCli } from "./lib/cli/program.ts";

if (import.meta.main) Deno.exit(await runCli(Deno.args));
