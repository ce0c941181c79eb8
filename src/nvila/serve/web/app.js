// NVILA web demo: sends the image and question to /v1/chat/completions with stream=true and shows the
// answer as its server-sent events arrive. No libraries, nothing loaded from other hosts.
"use strict";

const $ = (id) => document.getElementById(id);
let model = null;
let controller = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

async function loadModel() {
  try {
    const res = await fetch("/v1/models", { headers: headers() });
    if (res.status === 401) {
      $("model").textContent = "this server needs an API key (see Options)";
      document.querySelector("details").open = true;
      return;
    }
    const body = await res.json();
    model = body.data[0].id;
    $("model").textContent = model;
  } catch (err) {
    $("model").textContent = `cannot reach the server: ${err}`;
  }
}

function readAsDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function errorMessage(res) {
  try {
    const body = await res.json();
    return body.error ? body.error.message : JSON.stringify(body);
  } catch {
    return res.statusText;
  }
}

// Calls onEvent(object) for every `data: {...}` event; returns when `data: [DONE]` or the stream ends.
async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function ask(event) {
  event.preventDefault();
  const answer = $("answer");
  answer.textContent = "";
  answer.dataset.chunks = "0";
  const content = [];
  const file = $("image").files[0];
  if (file) content.push({ type: "image_url", image_url: { url: await readAsDataURL(file) } });
  content.push({ type: "text", text: $("question").value });
  const request = {
    messages: [{ role: "user", content }],
    max_tokens: Number($("max-tokens").value) || 256,
    temperature: Number($("temperature").value) || 0,
    stream: true,
    stream_options: { include_usage: true },
  };
  if (model) request.model = model;

  controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  setStatus("thinking…", "running");
  let usage = null;
  let finish = null;
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(request), signal: controller.signal,
    });
    if (!res.ok) throw new Error(`${res.status}: ${await errorMessage(res)}`);
    await readEvents(res, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        if (choice.delta.content) {
          answer.textContent += choice.delta.content;
          answer.dataset.chunks = String(Number(answer.dataset.chunks) + 1);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    });
    const counts = usage ? ` · ${usage.prompt_tokens} prompt tokens, ${usage.completion_tokens} generated` : "";
    setStatus(`done (${finish || "stopped"})${counts}`, "done");
  } catch (err) {
    if (err.name === "AbortError") setStatus("stopped", "done");
    else setStatus(`error: ${err.message}`, "error");
  } finally {
    $("send").disabled = false;
    $("stop").disabled = true;
    controller = null;
  }
}

$("image").addEventListener("change", () => {
  const file = $("image").files[0];
  $("preview").hidden = !file;
  $("drop-hint").textContent = file ? file.name : "Choose an image (optional)";
  if (file) $("preview").src = URL.createObjectURL(file);
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("ask").addEventListener("submit", ask);
$("api-key").addEventListener("change", loadModel);
loadModel();
