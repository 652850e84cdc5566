// Who is signed in (GET /api/v1/me), what they may do, and signing out. With no user on the
// server (auth off) everyone may do everything, as before.

import { api } from "./api.js";

export const SIGNIN = "/ui/signin";

/** The signed-in user: {auth, user, admin, roles: {team: role}}; loaded once by `load`. */
export const me = { auth: false, user: null, admin: false, roles: {} };

export async function load() {
  Object.assign(me, await api("/me"));
  if (!canActAnywhere()) document.body.classList.add("read-only");
  return me;
}

/** May they act (trigger, cancel, retry) on what belongs to `team`? The server decides anyway. */
export function canAct(team) {
  if (!me.auth || me.admin) return true;
  const role = team ? me.roles[team] : undefined;
  return role === "member" || role === "lead";
}

/** Are they a member or lead anywhere (or an admin)? Otherwise the action buttons are hidden. */
export function canActAnywhere() {
  return !me.auth || me.admin || Object.values(me.roles).some((r) => r === "member" || r === "lead");
}

export async function signOut() {
  try {
    await api("/session/end", { method: "POST" });
  } finally {
    location.assign(SIGNIN);
  }
}
