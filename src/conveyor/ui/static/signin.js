// The sign-in page: a token is traded for a session cookie (POST /api/v1/session), then the UI.

import { api } from "./api.js";

const form = document.getElementById("signin");
const problem = document.getElementById("problem");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  problem.hidden = true;
  const token = document.getElementById("token").value.trim();
  try {
    await api("/session", { method: "POST", body: { token }, signIn: false });
    location.assign("/");
  } catch (err) {
    problem.textContent = err.message || String(err);
    problem.hidden = false;
  }
});
