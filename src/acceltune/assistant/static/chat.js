// The acceltune assistant chat page: posts each message to /v1/reply and shows the reply, the intent the
// model chose with its confidence, and a hand-off when the assistant passes the conversation to a person.
"use strict";

const REASONS = {
  out_of_scope: "out of scope: not something this assistant was trained for",
  low_confidence: "low confidence: asked to rephrase",
  low_confidence_streak: "too many low-confidence turns in a row",
  handoff_intent: "this intent is always handled by a person",
};

const params = new URLSearchParams(window.location.search);
const conversationId = params.get("conversation") || newConversationId();
const context = {};
for (const [name, value] of params) {
  if (name.startsWith("slot.")) context[name.slice(5)] = value;
}
let apiKey = window.sessionStorage.getItem("acceltune-assistant-key") || "";
let keyWaiter = null;
let queue = Promise.resolve();

function newConversationId() {
  if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
  return "c-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(node) {
  const list = document.getElementById("messages");
  list.appendChild(node);
  node.scrollIntoView({block: "nearest"});
}

function showAnswer(answer) {
  const item = element("li", answer.handoff ? "assistant handoff" : "assistant");
  item.dataset.intent = answer.intent;
  item.dataset.handoff = String(answer.handoff);
  item.appendChild(element("span", "reply", answer.reply));
  const confidence = (answer.confidence * 100).toFixed(1) + "%";
  let details = "intent " + answer.intent + " · confidence " + confidence;
  if (answer.oos) details += " · out of scope";
  if (answer.reason && !answer.handoff) details += " · " + REASONS[answer.reason];
  item.appendChild(element("span", "details", details));
  if (answer.handoff) {
    item.appendChild(element("span", "badge", "Handed off to a person"));
    item.appendChild(element("span", "details", "why: " + (REASONS[answer.reason] || answer.reason)));
  }
  show(item);
}

function askForKey() {
  document.getElementById("key-form").hidden = false;
  document.getElementById("key").focus();
  return new Promise((resolve) => { keyWaiter = resolve; });
}

async function post(message) {
  const headers = {"Content-Type": "application/json"};
  if (apiKey) headers.Authorization = "Bearer " + apiKey;
  return fetch("/v1/reply", {method: "POST", headers,
    body: JSON.stringify({message, conversation_id: conversationId, context})});
}

async function send(message) {
  show(element("li", "user", message));
  const status = document.getElementById("status");
  status.textContent = "…";
  try {
    let response = await post(message);
    while (response.status === 401) {
      status.textContent = "waiting for an API key";
      await askForKey();
      response = await post(message);
    }
    const body = await response.json();
    if (!response.ok) {
      const error = body.error || {};
      show(element("li", "error", "Error " + response.status + ": " + (error.message || response.statusText)));
    } else {
      showAnswer(body);
    }
  } catch (err) {
    show(element("li", "error", "Could not reach the assistant: " + err));
  }
  status.textContent = "";
}

function enqueue(message) {
  // One message at a time, in order: the assistant counts low-confidence turns in order.
  queue = queue.then(() => send(message));
  return queue;
}

document.getElementById("conversation").textContent = conversationId;
document.getElementById("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("message");
  const message = input.value.trim();
  if (message) enqueue(message);
  input.value = "";
});
document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = document.getElementById("key").value.trim();
  window.sessionStorage.setItem("acceltune-assistant-key", apiKey);
  document.getElementById("key-form").hidden = true;
  if (keyWaiter) { keyWaiter(); keyWaiter = null; }
});
for (const message of params.getAll("say")) {
  if (message.trim()) enqueue(message.trim());
}
