"""The service's request and response bodies (declared in its OpenAPI schema) and its JSON errors."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, filename: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.filename = status, code, message, filename


def error_body(code: str, message: str, filename: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "filename": filename}, "detail": message}


class LabelProb(BaseModel):
    label: str
    prob: float


class Prediction(BaseModel):
    status: Literal["ok"] = "ok"
    filename: str
    label: str
    prob: float
    top_k: list[LabelProb]
    width: int = Field(description="Width of the photo as labelled (EXIF orientation applied).")
    height: int


class FileErrorDetail(BaseModel):
    code: str = Field(description="empty_file, unsupported_media_type, corrupt_image, too_many_pixels, "
                                  "bad_aspect_ratio")
    message: str


class FileError(BaseModel):
    status: Literal["error"] = "error"
    filename: str
    error: FileErrorDetail


class ModelRef(BaseModel):
    backbone: str | None
    runtime: str


class PredictResponse(BaseModel):
    results: list[Annotated[Union[Prediction, FileError], Field(discriminator="status")]] = Field(
        description="One entry per uploaded file, in order: a prediction or that file's error.")
    model: ModelRef
    seconds: float


class ErrorDetail(BaseModel):
    code: str
    message: str
    filename: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
    detail: str
