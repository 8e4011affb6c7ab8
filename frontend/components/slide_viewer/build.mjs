// Copies OpenSeadragon, exactly as `npm ci` installed it from the lock file, into the
// component's static folder, which the app serves itself (no CDN). Run by `make install`
// and by the frontend's Dockerfile; the copy is not committed.
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, "node_modules", "openseadragon", "build", "openseadragon");
const target = join(here, "static", "vendor", "openseadragon");
rmSync(target, { recursive: true, force: true });
mkdirSync(target, { recursive: true });
cpSync(join(source, "openseadragon.min.js"), join(target, "openseadragon.min.js"));
cpSync(join(source, "images"), join(target, "images"), { recursive: true });
cpSync(join(here, "node_modules", "openseadragon", "LICENSE.txt"), join(target, "LICENSE.txt"));
