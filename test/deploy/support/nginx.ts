import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ROOT } from "../../support/processes.js";

/** deploy/nginx rendered for a loopback port and local upstreams, run as a child process. */
export interface LocalNginx {
  readonly dir: string;
  readonly url: string;
  /** The TLS server of templates/inferline-tls.conf (self-signed), when started with `tlsPort`. */
  readonly httpsUrl: string | undefined;
  /** `nginx -p … -c …` prefix for -t / -s reload from scripts. */
  readonly command: string;
  readonly upstreamFile: string;
  /** Parsed access log lines (JSON). */
  accessLog(): Record<string, string | number>[];
  stop(): Promise<void>;
}

export function upstreamBlock(servers: readonly string[]): string {
  return [
    "upstream inferline_api {",
    "    least_conn;",
    ...servers.map((s) => `    server ${s} max_fails=2 fail_timeout=10s;`),
    "    keepalive 64;",
    "    keepalive_timeout 60s;",
    "}",
    "",
  ].join("\n");
}

/** Copies the project's nginx config into a temp dir, pointing it at `servers` on `port`. */
export async function startNginx(
  port: number,
  servers: readonly string[],
  opts: { ratePerSecond?: number; tlsPort?: number } = {},
): Promise<LocalNginx> {
  const dir = mkdtempSync(path.join(tmpdir(), "inferline-nginx-"));
  const src = path.join(ROOT, "deploy", "nginx");
  cpSync(src, dir, { recursive: true });
  const main = path.join(dir, "nginx.conf");
  writeFileSync(
    main,
    readFileSync(main, "utf8")
      .replace(/^pid .*;$/m, `pid ${dir}/nginx.pid;`)
      .replace(/^error_log .*;$/m, `error_log ${dir}/error.log warn;`)
      .replace(/access_log \/dev\/stdout/, `access_log ${dir}/access.log`)
      .replace(/worker_processes auto;/, "worker_processes 2;")
      .replace(/rate=\d+r\/s/, opts.ratePerSecond ? `rate=${opts.ratePerSecond}r/s` : "$&"),
  );
  const server = path.join(dir, "conf.d", "inferline.conf");
  writeFileSync(
    server,
    readFileSync(server, "utf8")
      .replace(/listen 80 default_server;/, `listen 127.0.0.1:${port} default_server;`)
      .replace(/^.*listen \[::\]:80.*$/m, ""),
  );
  if (opts.tlsPort !== undefined) {
    // The TLS template as an operator enables it, with a throwaway certificate and without its
    // port-80 redirect server (the server above has that port here).
    const cert = spawnSync(
      "openssl",
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=api.example.com"].concat([
        "-keyout",
        `${dir}/privkey.pem`,
        "-out",
        `${dir}/fullchain.pem`,
      ]),
      { encoding: "utf8" },
    );
    if (cert.status !== 0) throw new Error(`openssl failed: ${cert.stderr}`);
    const template = readFileSync(path.join(dir, "templates", "inferline-tls.conf"), "utf8");
    writeFileSync(
      path.join(dir, "conf.d", "tls.conf"),
      template
        .slice(0, template.indexOf("# Redirect plain HTTP"))
        .replace(/listen 443 ssl http2;/, `listen 127.0.0.1:${opts.tlsPort} ssl;`)
        .replace(/^.*listen \[::\]:443.*$/m, "")
        .replaceAll("/etc/letsencrypt/live/api.example.com", dir),
    );
  }
  const upstreamFile = path.join(dir, "conf.d", "upstream.conf");
  writeFileSync(upstreamFile, upstreamBlock(servers));
  const command = `nginx -p ${dir} -c ${main} -e ${dir}/error.log`;
  const check = spawnSync("sh", ["-c", `${command} -t -q`], { encoding: "utf8" });
  if (check.status !== 0) throw new Error(`nginx -t failed: ${check.stderr}`);
  const proc: ChildProcess = spawn("sh", ["-c", `exec ${command} -g 'daemon off;'`], { stdio: "ignore" });
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`${url}/metrics`);
      break;
    } catch {
      await sleep(50);
    }
  }
  return {
    dir,
    url,
    httpsUrl: opts.tlsPort === undefined ? undefined : `https://127.0.0.1:${opts.tlsPort}`,
    command,
    upstreamFile,
    accessLog: () => {
      let text: string;
      try {
        text = readFileSync(path.join(dir, "access.log"), "utf8");
      } catch {
        return [];
      }
      return text
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, string | number>);
    },
    stop: async () => {
      if (proc.exitCode === null) proc.kill("SIGQUIT");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
