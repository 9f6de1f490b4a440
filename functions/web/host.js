// The standalone host page. A CRM embedding <crm-calendar-sync> sets `getIdToken` to its own sign-in (for example
// Firebase's `currentUser.getIdToken()`); locally, `make run` signs in a demo user through the Google stand-in.
import "./crm-calendar-sync.js";

const LOCAL_SIGN_IN = "/_local/id-token";
const signedIn = document.getElementById("signed-in");
const component = document.querySelector("crm-calendar-sync");
let cached = null;

async function demoIdToken() {
  if (cached && cached.expiresAt > Date.now() + 60_000) return cached.token;
  const response = await fetch(LOCAL_SIGN_IN, { method: "POST", credentials: "same-origin" });
  if (!response.ok) throw new Error("This page signs in a demo user only on the local stack (make run).");
  const body = await response.json();
  cached = { token: body.id_token, expiresAt: Date.now() + body.expires_in * 1000 };
  signedIn.textContent = `Signed in as ${body.email} (demo user ${body.user_id})`;
  return cached.token;
}

component.getIdToken = demoIdToken;
demoIdToken().catch((error) => {
  signedIn.textContent = error.message;
});
