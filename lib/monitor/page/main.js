/**
 * The monitor page: a login form, then the live status. The token is kept in
 * sessionStorage (this tab only, gone when it closes, never in a URL) so the
 * page can log in again by itself after the master restarts. Nothing from the
 * master is shown before it accepted the token, and all of it is removed when
 * it refuses the token or the user logs out.
 */
import { Connection } from "./connection.js";
import { ClusterBoard, renderHosts, renderMaster, renderTickets } from "./render.js";

const TOKEN_KEY = "snowflock.token";

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const login = $("login");
const form = /** @type {HTMLFormElement} */ ($("login-form"));
const tokenInput = /** @type {HTMLInputElement} */ ($("token"));
const loginError = $("login-error");
const data = $("data");
const link = $("link");
const logout = $("logout");
const master = $("master");
const board = new ClusterBoard($("clusters"));

/** @type {Connection | undefined} */
let connection;

const LINK_TEXT = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…" };

function showLogin(error) {
  connection?.stop();
  connection = undefined;
  sessionStorage.removeItem(TOKEN_KEY);
  data.hidden = true;
  board.clear();
  for (const id of ["hosts", "tickets"]) $(id).querySelector("tbody")?.replaceChildren();
  master.replaceChildren();
  logout.hidden = true;
  link.dataset.state = "offline";
  link.textContent = "logged out";
  loginError.hidden = !error;
  loginError.textContent = error ?? "";
  login.hidden = false;
  tokenInput.focus();
}

/** @param {string} token */
function connect(token) {
  connection?.stop();
  connection = new Connection(token, {
    status(status) {
      sessionStorage.setItem(TOKEN_KEY, token); // kept only once the master took it
      login.hidden = true;
      data.hidden = false;
      logout.hidden = false;
      renderMaster(master, status);
      renderHosts($("hosts").querySelector("tbody"), status.hosts);
      renderTickets($("tickets").querySelector("tbody"), status.tickets);
      board.update(status, Date.now());
    },
    state(state) {
      link.dataset.state = state;
      link.textContent = LINK_TEXT[state];
    },
    refused: showLogin,
  });
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const token = tokenInput.value.trim();
  tokenInput.value = "";
  if (token) connect(token);
});

logout.addEventListener("click", () => {
  // Ends the server-side session too; the page forgets the token either way.
  fetch("/v1/session", { method: "DELETE" }).catch(() => {});
  showLogin();
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) connect(saved);
else showLogin();
