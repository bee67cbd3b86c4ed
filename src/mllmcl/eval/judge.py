"""Optional LLM answer extractor for MathVista, over any OpenAI-compatible chat endpoint (stdlib only).

The official protocol asks an LLM (gpt-4o-mini in MLLM-CL) to pull the final answer out of a free-text
reply, with a few worked examples in the prompt, retrying up to five times with a rising temperature
(0, 0.5, 1, ...). This client does the same with its own examples. It is never needed: without it the
rule extractor in `mathvista.py` decides, and it is also the fallback when every try fails.

    >>> extractor = OpenAIExtractor("http://localhost:8000/v1", "gpt-4o-mini", api_key=None)
    >>> SCORERS.build("math", extractor=extractor)
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Mapping

INSTRUCTION = ("Below are worked examples of pulling the final answer out of a model's reply. Do the same for "
               "the last one: give only the answer, in the form the hint asks for (an integer, a number with "
               "the requested decimals, a Python list, or an option letter).\n")

EXAMPLES = [
    ("Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, "
     "at the end.\nQuestion: How many birds are on the wire?", "I can count seven birds sitting on the wire.", "7"),
    ("Hint: Please answer the question requiring a floating-point number with one decimal place and provide the "
     "final value, e.g., 1.2, 1.3, 1.4, at the end.\nQuestion: What is the ratio of red bars to blue bars?",
     "There are 3 red bars and 5 blue bars, so the ratio is 0.6.", "0.6"),
    ("Hint: Please answer the question requiring a floating-point number with two decimal places and provide the "
     "final value, e.g., 1.23, 1.34, 1.45, at the end.\nQuestion: What do a pen and a ruler cost together? "
     "(Unit: $)", "Together they cost $2.75.", "2.75"),
    ("Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., "
     "[1, 2, 3], [1.2, 1.3, 1.4], at the end.\nQuestion: In which two years was rainfall lowest?",
     "Rainfall was lowest in 2003 and in 2011.", "[2003, 2011]"),
    ("Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n"
     "Question: What is the measure of angle x?\nChoices:\n(A) 30°\n(B) 45°\n(C) 60°\n(D) 90°",
     "Angle x is half of the right angle, so the answer is (B) 45°.", "B"),
]


def build_prompt(question: str, prediction: str) -> str:
    parts = [INSTRUCTION]
    for example_question, reply, answer in EXAMPLES:
        parts.append(f"{example_question}\nModel reply: {reply}\nExtracted answer: {answer}\n")
    parts.append(f"{question}\nModel reply: {prediction}\nExtracted answer:")
    return "\n".join(parts)


@dataclass(frozen=True)
class OpenAIExtractor:
    """Calls `POST {url}/chat/completions`; returns the extracted answer, or None when every try failed."""

    url: str
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    retries: int = 5
    timeout: float = 60.0

    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"

    def __call__(self, row: Mapping[str, Any], prediction: str) -> str | None:
        prompt = build_prompt(str(row.get("question") or row.get("text") or ""), prediction)
        for attempt in range(self.retries):
            answer = self._ask(prompt, temperature=0.5 * attempt)
            if answer:
                return answer
        return None

    def _ask(self, prompt: str, temperature: float) -> str | None:
        body = json.dumps({"model": self.model, "temperature": temperature, "max_tokens": 128,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint(), data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read().decode("utf-8"))
            return str(reply["choices"][0]["message"]["content"]).strip() or None
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError):
            return None  # a failed try; the caller retries, then falls back to the rules
