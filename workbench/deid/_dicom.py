"""DICOM in and out of the de-identification pipeline.

Three verbs, all working on bytes and datasets in memory (the input is
usually a decrypted original, so nothing touches disk):

- :func:`read_dicom` decodes a single-frame visible-light photograph or
  secondary-capture image to RGB pixels and returns the dataset without its
  pixel data. The dataset is *identifiable*: keep it in memory only.
- :func:`deidentify_dataset` returns a new dataset cleaned by the DICOM
  PS3.15 Annex E Basic Application Level Confidentiality Profile with the
  Retain Longitudinal Temporal Information With Modified Dates Option.
- :func:`write_dicom` writes a de-identified dataset and (redacted) RGB
  pixels as a new Part 10 file: Explicit VR Little Endian, uncompressed, file
  meta rebuilt from scratch, byte-for-byte reproducible.

Every failure is a :class:`workbench.errors.InvalidInput` subclass; no
pydicom or numpy exception escapes, and no message quotes a value from the
file (names, IDs and UIDs identify patients). pydicom's own warnings and log
records do quote values, so they are silenced while these functions run.

Profile, as implemented
-----------------------
:data:`PROFILE` is a curated part of PS3.15 Table E.1-1: the attributes that
can occur in photographic and secondary-capture objects, each with the
standard's Basic Profile code and the action taken here. Where the standard
allows a choice (``X/Z``, ``X/Z/D``) the strongest one that keeps the IOD
valid is used: ``X`` unless the attribute is Type 1 or 2 in the VL or SC
IODs. Beyond the table, fail-closed rules cover what the table cannot know:

- all private tags, curves (50xx), overlays (60xx), group lengths, command
  and file-meta groups found in the body, and pixel data are removed;
- an element whose VR is UN or whose tag pydicom's dictionary does not know
  is removed (its content cannot be judged);
- any other person name (PN) is emptied, any other date (DA, DT) is shifted,
  and any other UID that is not a DICOM-defined one (``1.2.840.10008.``) or a
  class / coding-scheme UID is replaced like an instance UID;
- every sequence is walked, and the same rules apply at every depth.

Dates (DA, and the date part of DT) are shifted by a whole number of days, so
intervals are kept; times (TM, and the time part of DT) are kept, as the
Modified Dates Option allows: a whole-day shift leaves the time of day
meaningful. Instance UIDs are replaced by ``2.25.`` followed by the first
128 bits of HMAC-SHA256(uid_key, old UID) as a decimal integer, so the same
key maps the same UID to the same new UID in every file of a series.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import io
import logging
import re
import struct
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.datadict import dictionary_has_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from .._imageio import MAX_PIXELS, _as_bytes
from ..errors import DecompressionBomb, InvalidInput, UnsupportedFormat, WorkbenchError
from ..vault import _crypto

__all__ = [
    "DicomImage",
    "PROFILE",
    "is_dicom",
    "read_dicom",
    "deidentify_dataset",
    "write_dicom",
]

# --------------------------------------------------------------------------
# What is read
# --------------------------------------------------------------------------

#: SOP classes read: visible-light photography and secondary capture.
SUPPORTED_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL Endoscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.2": "VL Microscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.3": "VL Slide-Coordinates Microscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.7": "Dermoscopic Photography Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
}

_SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
# These three IODs require MONOCHROME2 pixels; written as RGB they become
# plain Secondary Capture, the one SC IOD that allows any photometric
# interpretation.
_GRAYSCALE_MULTIFRAME_SC = {
    "1.2.840.10008.5.1.4.1.1.7.1",
    "1.2.840.10008.5.1.4.1.1.7.2",
    "1.2.840.10008.5.1.4.1.1.7.3",
}
_TRUE_COLOR_MULTIFRAME_SC = "1.2.840.10008.5.1.4.1.1.7.4"

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
# Pillow (through pydicom) decodes JPEG Baseline; pylibjpeg and GDCM are not
# installed, so no other compressed syntax can be decoded. Deflated syntax is
# refused too: pydicom inflates the whole dataset before any size check.
_READABLE_SYNTAXES = {_IMPLICIT_LE, _EXPLICIT_LE, _JPEG_BASELINE}

_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422")

# --------------------------------------------------------------------------
# What is written
# --------------------------------------------------------------------------

# A fixed UUID-derived root: no organisation root is registered for the
# workbench, and a constant keeps the output reproducible.
_IMPLEMENTATION_CLASS_UID = "2.25.59381377046425268623484463478815149411"
_IMPLEMENTATION_VERSION = "WORKBENCH_0_1"

_METHOD_TEXT = [
    "PS3.15 E Basic Application Confidentiality Profile",
    "Retain Longitudinal Temporal Information Modified Dates",
    "workbench: private, overlay, curve and unknown data removed",
]
_METHOD_CODES = [
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
]

_DUMMY_TEXT = "ANONYMIZED"
_PSEUDONYM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_SHIFT_DAYS = 36_525  # a century: anything larger is a bug, not a shift
_MIN_UID_KEY_BYTES = 16

# --------------------------------------------------------------------------
# Messages: what happened and what to do; never a value from the file
# --------------------------------------------------------------------------

_MSG_EMPTY = "the DICOM file is empty (0 bytes); copy or export it again"
_MSG_NOT_DICOM = (
    "the data is not a DICOM Part 10 file (no 128-byte preamble followed by 'DICM'); "
    "export the image from the PACS or viewer as a DICOM file"
)
_MSG_META = (
    "the DICOM file meta information is missing or damaged; "
    "export the file again from the PACS or modality"
)
_MSG_CORRUPT = (
    "the DICOM file is truncated or corrupt; copy it again, or export it again "
    "from the PACS or modality"
)
_MSG_MEMORY = "the DICOM image is too large to decode in the memory available"
_MSG_SYNTAX = (
    "this DICOM transfer syntax is not supported: only uncompressed (Implicit or "
    "Explicit VR Little Endian) and JPEG Baseline files are read; export the image "
    "uncompressed from the PACS, or decompress it first (e.g. dcmdjpeg or gdcmconv --raw)"
)
_MSG_SOP = (
    "this kind of DICOM object is not supported: only VL Photographic, VL Endoscopic, "
    "VL Microscopic, VL Slide-Coordinates Microscopic and Dermoscopic Photography "
    "images, and Secondary Capture images (single-frame, or multi-frame SC with one "
    "frame) are read; use the imaging system's own export for other objects"
)
_MSG_MULTIFRAME = (
    "multi-frame DICOM is not supported yet; export each frame as a single-frame image"
)
_MSG_BOMB = (
    f"the DICOM header claims more than {MAX_PIXELS:,} pixels; "
    "the file is corrupt or hostile and was not decoded"
)
_MSG_NO_PIXELS = "the DICOM file has no pixel data (it is not an image); choose an image file"
_MSG_PIXEL_FORMAT = (
    "this DICOM pixel format is not supported: 1-, 8- or 16-bit grayscale, palette colour, "
    "RGB or YBR_FULL images are read; export the image as 8-bit RGB or grayscale"
)
_MSG_JPEG_MISMATCH = (
    "the JPEG image inside the DICOM file does not match the DICOM header (size, "
    "samples or precision); the file is corrupt, so export it again"
)
_MSG_NOT_DATASET = "expected a pydicom Dataset (as returned by read_dicom)"
_MSG_PSEUDONYM = (
    "patient_pseudonym must be 1-64 characters of letters, digits, '.', '_' or '-', "
    "starting with a letter or digit; use the pseudonym the workbench generated"
)
_MSG_SHIFT = f"date_shift_days must be an integer between -{_MAX_SHIFT_DAYS} and {_MAX_SHIFT_DAYS}"
_MSG_UID_KEY = (
    f"uid_key must be at least {_MIN_UID_KEY_BYTES} random bytes; "
    "use the key the workbench generated for this cohort"
)
_MSG_FLAG = "burned_in_text_redacted must be True or False"
_MSG_DEID = (
    "the dataset has not been de-identified (PatientIdentityRemoved is not YES, or "
    "private, overlay or curve data remain); pass it through deidentify_dataset first"
)
_MSG_NO_SOP = (
    "the dataset has no SOP Class UID or SOP Instance UID; "
    "de-identify a dataset returned by read_dicom"
)
_MSG_PIXELS_ARG = (
    "pixels must be a uint8 numpy array of shape (height, width, 3) with both sides "
    "between 1 and 65535"
)
_MSG_WRITE = "the dataset could not be written as DICOM; it holds a malformed value"

# --------------------------------------------------------------------------
# The profile table
# --------------------------------------------------------------------------

# Columns: keyword, the Basic Profile code in PS3.15 Table E.1-1, the action
# taken here. Actions: X remove; Z empty (PatientName and PatientID get the
# pseudonym); D dummy value; U replace UID (on a sequence: keep it, and
# replace the UIDs inside, which is the table's "U*"); C clean dates under
# the Modified Dates Option (DA and DT shifted, TM kept); K keep.
_TABLE_E1_1 = """
AccessionNumber                                        Z       Z
AcquisitionComments                                    X       X
AcquisitionContextDescription                          X       X
AcquisitionContextSequence                             X/Z     X
AcquisitionDate                                        X/Z     C
AcquisitionDateTime                                    X/Z/D   C
AcquisitionDeviceProcessingDescription                 X/D     X
AcquisitionProtocolDescription                         X       X
AcquisitionTime                                        X/Z     C
ActualHumanPerformersSequence                          X       X
AdditionalPatientHistory                               X       X
AddressTrial                                           X       X
AdmissionID                                            X       X
AdmittingDate                                          X       C
AdmittingDiagnosesCodeSequence                         X       X
AdmittingDiagnosesDescription                          X       X
AdmittingTime                                          X       C
Allergies                                              X       X
Arbitrary                                              X       X
AuthorObserverSequence                                 X       X
BranchOfService                                        X       X
CassetteID                                             X       X
ClinicalTrialCoordinatingCenterName                    Z       Z
ClinicalTrialProtocolEthicsCommitteeApprovalNumber     X       X
ClinicalTrialProtocolEthicsCommitteeName               D       D
ClinicalTrialProtocolID                                D       D
ClinicalTrialProtocolName                              Z       Z
ClinicalTrialSeriesDescription                         X       X
ClinicalTrialSeriesID                                  X       X
ClinicalTrialSiteID                                    Z       Z
ClinicalTrialSiteName                                  Z       Z
ClinicalTrialSponsorName                               D       D
ClinicalTrialSubjectID                                 Z       Z
ClinicalTrialSubjectReadingID                          Z       Z
ClinicalTrialTimePointDescription                      X       X
ClinicalTrialTimePointID                               Z       Z
CommentsOnThePerformedProcedureStep                    X       X
ConcatenationUID                                       U       U
ConsentForClinicalTrialUseSequence                     X       X
ConsultingPhysicianIdentificationSequence              X       X
ConsultingPhysicianName                                Z       Z
ContainerIdentifier                                    D       D
ContentCreatorIdentificationCodeSequence               X       X
ContentCreatorName                                     Z       Z
ContentDate                                            Z/D     C
ContentSequence                                        X       X
ContentTime                                            Z/D     C
ContextGroupExtensionCreatorUID                        U       U
ContributionDateTime                                   X/D     C
ContributionDescription                                X       X
CountryOfResidence                                     X       X
CreatorVersionUID                                      U       U
CurrentObserverTrial                                   X       X
CurrentPatientLocation                                 X       X
CurveDate                                              X       C
CurveTime                                              X       C
CustodialOrganizationSequence                          X       X
DataSetTrailingPadding                                 X       X
DateOfLastCalibration                                  X       C
DateOfSecondaryCapture                                 X       C
DerivationDescription                                  X       X
DetectorID                                             X/D     X
DeviceDescription                                      X       X
DeviceSerialNumber                                     X/Z/D   X
DeviceUID                                              U       U
DigitalSignatureUID                                    X       X
DigitalSignaturesSequence                              X       X
DimensionOrganizationUID                               U       U
DischargeDiagnosisDescription                          X       X
DistributionAddress                                    X       X
DistributionName                                       X       X
DoseReferenceUID                                       U       U
EncryptedAttributesSequence                            X       X
EndAcquisitionDateTime                                 X/D     C
EthnicGroup                                            X       X
ExpectedCompletionDateTime                             X       C
FailedSOPInstanceUIDList                               U       U
FiducialUID                                            U       U
FillerOrderNumberImagingServiceRequest                 Z       Z
FrameAcquisitionDateTime                               X/D     C
FrameComments                                          X       X
FrameOfReferenceUID                                    U       U
FrameReferenceDateTime                                 X/D     C
GantryID                                               X       X
GeneratorID                                            X       X
GraphicAnnotationSequence                              D       D
HumanPerformerName                                     X       X
HumanPerformerOrganization                             X       X
IconImageSequence                                      X       X
IdentifyingComments                                    X       X
ImageComments                                          X       X
ImagePresentationComments                              X       X
ImagingServiceRequestComments                          X       X
Impressions                                            X       X
InstanceCoercionDateTime                               X       C
InstanceCreationDate                                   X/D     C
InstanceCreationTime                                   X/Z/D   C
InstanceCreatorUID                                     U       U
InstitutionAddress                                     X       X
InstitutionCodeSequence                                X/Z/D   X
InstitutionName                                        X/Z/D   X
InstitutionalDepartmentName                            X       X
InstitutionalDepartmentTypeCodeSequence                X       X
InsurancePlanIdentification                            X       X
IntendedRecipientsOfResultsIdentificationSequence      X       X
InterpretationApproverSequence                         X       X
InterpretationAuthor                                   X       X
InterpretationDiagnosisDescription                     X       X
InterpretationIDIssuer                                 X       X
InterpretationRecorder                                 X       X
InterpretationText                                     X       X
InterpretationTranscriber                              X       X
IrradiationEventUID                                    U       U
IssueDateOfImagingServiceRequest                       X       C
IssueTimeOfImagingServiceRequest                       X       C
IssuerOfAccessionNumberSequence                        X       X
IssuerOfAdmissionID                                    X       X
IssuerOfAdmissionIDSequence                            X       X
IssuerOfPatientID                                      X       X
IssuerOfPatientIDQualifiersSequence                    X       X
IssuerOfServiceEpisodeID                               X       X
IssuerOfServiceEpisodeIDSequence                       X       X
LargePaletteColorLookupTableUID                        U       U
LastMenstrualDate                                      X       C
LongDeviceDescription                                  X       X
MAC                                                    X       X
MediaStorageSOPInstanceUID                             U       U
MedicalAlerts                                          X       X
MedicalRecordLocator                                   X       X
MilitaryRank                                           X       X
ModifiedAttributesSequence                             X       X
ModifiedImageDescription                               X       X
ModifyingDeviceID                                      X       X
NameOfPhysiciansReadingStudy                           X       X
NamesOfIntendedRecipientsOfResults                     X       X
ObservationUID                                         U       U
Occupation                                             X       X
OperatorIdentificationSequence                         X       X
OperatorsName                                          X/Z/D   X
OrderCallbackPhoneNumber                               X       X
OrderCallbackTelecomInformation                        X       X
OrderEnteredBy                                         X       X
OrderEntererLocation                                   X       X
OriginalAttributesSequence                             X       X
OtherPatientIDs                                        X       X
OtherPatientIDsSequence                                X       X
OtherPatientNames                                      X       X
OverlayDate                                            X       C
OverlayTime                                            X       C
PaletteColorLookupTableUID                             U       U
ParticipantSequence                                    X       X
PatientAddress                                         X       X
PatientAge                                             X       X
PatientAlternativeCalendar                             X       X
PatientBirthDate                                       Z       Z
PatientBirthDateInAlternativeCalendar                  X       X
PatientBirthName                                       X       X
PatientBirthTime                                       X       X
PatientComments                                        X       X
PatientDeathDateInAlternativeCalendar                  X       X
PatientID                                              Z       Z
PatientInstitutionResidence                            X       X
PatientInsurancePlanCodeSequence                       X       X
PatientMotherBirthName                                 X       X
PatientName                                            Z       Z
PatientPrimaryLanguageCodeSequence                     X       X
PatientPrimaryLanguageModifierCodeSequence             X       X
PatientReligiousPreference                             X       X
PatientSex                                             Z       Z
PatientSexNeutered                                     X/Z     X
PatientSize                                            X       X
PatientState                                           X       X
PatientTelecomInformation                              X       X
PatientTelephoneNumbers                                X       X
PatientTransportArrangements                           X       X
PatientWeight                                          X       X
PerformedLocation                                      X       X
PerformedProcedureStepDescription                      X       X
PerformedProcedureStepEndDate                          X       C
PerformedProcedureStepEndTime                          X       C
PerformedProcedureStepID                               X       X
PerformedProcedureStepStartDate                        X       C
PerformedProcedureStepStartTime                        X       C
PerformedStationAETitle                                X       X
PerformedStationGeographicLocationCodeSequence         X       X
PerformedStationName                                   X       X
PerformedStationNameCodeSequence                       X       X
PerformingPhysicianIdentificationSequence              X       X
PerformingPhysicianName                                X       X
PersonAddress                                          X       X
PersonIdentificationCodeSequence                       D       D
PersonName                                             D       D
PersonTelecomInformation                               X       X
PersonTelephoneNumbers                                 X       X
PhysicianApprovingInterpretation                       X       X
PhysiciansOfRecord                                     X       X
PhysiciansOfRecordIdentificationSequence               X       X
PhysiciansReadingStudyIdentificationSequence           X       X
PlacerOrderNumberImagingServiceRequest                 Z       Z
PlateID                                                X       X
PreMedication                                          X       X
PregnancyStatus                                        X       X
ProcedureStepCancellationDateTime                      X       C
ProtocolName                                           X/D     X
ReasonForStudy                                         X       X
ReasonForTheRequestedProcedure                         X       X
ReasonForVisit                                         X       X
ReferencedDigitalSignatureSequence                     X       X
ReferencedFrameOfReferenceUID                          U       U
ReferencedGeneralPurposeScheduledProcedureStepTransactionUID  U  U
ReferencedImageSequence                                X/Z/U*  U
ReferencedInstanceSequence                             X/Z/U*  U
ReferencedPatientAliasSequence                         X       X
ReferencedPatientPhotoSequence                         X       X
ReferencedPatientSequence                              X       X
ReferencedPerformedProcedureStepSequence               X/Z/D   X
ReferencedRequestSequence                              X       X
ReferencedSOPInstanceMACSequence                       X       X
ReferencedSOPInstanceUID                               U       U
ReferencedSOPInstanceUIDInFile                         U       U
ReferencedStudySequence                                X/Z     X
ReferringPhysicianAddress                              X       X
ReferringPhysicianIdentificationSequence               X       X
ReferringPhysicianName                                 Z       Z
ReferringPhysicianTelephoneNumbers                     X       X
RegionOfResidence                                      X       X
RelatedFrameOfReferenceUID                             U       U
RequestAttributesSequence                              X       X
RequestedContrastAgent                                 X       X
RequestedProcedureComments                             X       X
RequestedProcedureDescription                          X/Z     X
RequestedProcedureID                                   X       X
RequestedProcedureLocation                             X       X
RequestingPhysician                                    X       X
RequestingService                                      X       X
ResponsibleOrganization                                X       X
ResponsiblePerson                                      X       X
ResultsComments                                        X       X
ResultsDistributionListSequence                        X       X
ResultsIDIssuer                                        X       X
ReviewDate                                             X       C
ReviewTime                                             X       C
ReviewerName                                           X/Z     X
RouteOfAdmissions                                      X       X
ScheduledHumanPerformersSequence                       X       X
ScheduledPatientInstitutionResidence                   X       X
ScheduledPerformingPhysicianIdentificationSequence     X       X
ScheduledPerformingPhysicianName                       X       X
ScheduledProcedureStepDescription                      X       X
ScheduledProcedureStepEndDate                          X       C
ScheduledProcedureStepEndTime                          X       C
ScheduledProcedureStepID                               X       X
ScheduledProcedureStepLocation                         X       X
ScheduledProcedureStepModificationDateTime             X       C
ScheduledProcedureStepStartDate                        X       C
ScheduledProcedureStepStartDateTime                    X       C
ScheduledProcedureStepStartTime                        X       C
ScheduledStationAETitle                                X       X
ScheduledStationGeographicLocationCodeSequence         X       X
ScheduledStationName                                   X       X
ScheduledStationNameCodeSequence                       X       X
ScheduledStudyLocation                                 X       X
ScheduledStudyLocationAETitle                          X       X
ScheduledStudyStartDate                                X       C
ScheduledStudyStartTime                                X       C
ScheduledStudyStopDate                                 X       C
ScheduledStudyStopTime                                 X       C
SeriesDate                                             X/D     C
SeriesDescription                                      X       X
SeriesInstanceUID                                      U       U
SeriesTime                                             X/D     C
ServiceEpisodeDescription                              X       X
ServiceEpisodeID                                       X       X
SmokingStatus                                          X       X
SOPInstanceUID                                         U       U
SourceFrameOfReferenceUID                              U       U
SourceImageSequence                                    X/Z/U*  U
SourceSerialNumber                                     X       X
SpecialNeeds                                           X       X
SpecimenAccessionNumber                                X       X
SpecimenIdentifier                                     D       D
SpecimenUID                                            U       U
StartAcquisitionDateTime                               X/D     C
StationName                                            X/Z/D   X
StorageMediaFileSetUID                                 U       U
StudyArrivalDate                                       X       C
StudyArrivalTime                                       X       C
StudyComments                                          X       X
StudyCompletionDate                                    X       C
StudyCompletionTime                                    X       C
StudyDate                                              Z       C
StudyDescription                                       X       X
StudyID                                                Z       Z
StudyIDIssuer                                          X       X
StudyInstanceUID                                       U       U
StudyReadDate                                          X       C
StudyReadTime                                          X       C
StudyTime                                              Z       C
StudyVerifiedDate                                      X       C
StudyVerifiedTime                                      X       C
SynchronizationFrameOfReferenceUID                     U       U
TelephoneNumberTrial                                   X       X
TemplateExtensionCreatorUID                            U       U
TemplateExtensionOrganizationUID                       U       U
TextComments                                           X       X
TextString                                             X       X
TimeOfLastCalibration                                  X       C
TimeOfSecondaryCapture                                 X       C
TimezoneOffsetFromUTC                                  X       X
TopicAuthor                                            X       X
TopicKeywords                                          X       X
TopicSubject                                           X       X
TopicTitle                                             X       X
TransactionUID                                         U       U
TypeOfPatientID                                        X       X
UDISequence                                            X       X
UID                                                    U       U
UniqueDeviceIdentifier                                 X       X
VerifyingObserverIdentificationCodeSequence            Z       Z
VerifyingObserverName                                  D       D
VerifyingObserverSequence                              D       D
VerifyingOrganization                                  X       X
VisitComments                                          X       X
"""

# Not in Table E.1-1 (or not in every edition of it), removed anyway because
# photographs carry them: the camera owner, lens serial number, maker note
# (Canon serials and owner name) and network names of the sending station.
_WORKBENCH_ADDITIONS = """
CameraOwnerName                                        -       X
DeviceSettingDescription                               -       X
LensSerialNumber                                       -       X
MakerNote                                              -       X
RetrieveAETitle                                        -       X
StationAETitle                                         -       X
"""

# DICOM's copy of EXIF GPS: (0016,0070) GPSVersionID to (0016,008E)
# GPSDifferential. All location, all removed.
_GPS_FIRST, _GPS_LAST = 0x00160070, 0x0016008E

# UIDs that name a class, syntax or coding scheme, not an instance: kept.
_CLASS_UID_KEYWORDS = (
    "SOPClassUID",
    "ReferencedSOPClassUID",
    "ReferencedSOPClassUIDInFile",
    "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID",
    "TransferSyntaxUID",
    "ReferencedTransferSyntaxUIDInFile",
    "CodingSchemeUID",
    "ContextUID",
    "MappingResourceUID",
    "ImplementationClassUID",
)


def _parse_table(text: str) -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in text.strip().splitlines():
        keyword, basic, action = line.split()
        rows[keyword] = (basic, action)
    return rows


#: The profile as implemented: keyword -> (Basic Profile code in PS3.15
#: Table E.1-1, or ``-`` for a workbench addition; action taken here).
PROFILE: dict[str, tuple[str, str]] = {
    **_parse_table(_TABLE_E1_1),
    **_parse_table(_WORKBENCH_ADDITIONS),
}


def _resolve(keywords) -> list[int]:
    tags = []
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:
            # A keyword the installed pydicom does not know would silently
            # drop a protection: refuse to import instead.
            raise RuntimeError(f"profile keyword unknown to pydicom: {keyword}")
        tags.append(tag)
    return tags


_ACTIONS: dict[int, str] = dict(zip(_resolve(PROFILE), (a for _, a in PROFILE.values())))
_CLASS_UID_TAGS = frozenset(_resolve(_CLASS_UID_KEYWORDS))
_TAG_PATIENT_NAME = tag_for_keyword("PatientName")
_TAG_PATIENT_ID = tag_for_keyword("PatientID")

# Groups removed whole: command (0000), file meta found in a body (0002),
# DICOMDIR (0004), retired text and results groups (1000, 4000, 4008), curves
# (50xx), overlays (60xx), pixel data (7Fxx: pixels travel separately),
# digital signatures (FFFA) and trailing padding (FFFC).
_DROPPED_GROUPS = frozenset({0x0000, 0x0002, 0x0004, 0x1000, 0x4000, 0x4008, 0xFFFA, 0xFFFC})


def _dropped_group(group: int) -> bool:
    return (
        group in _DROPPED_GROUPS
        or 0x5000 <= group <= 0x50FF
        or 0x6000 <= group <= 0x60FF
        or 0x7F00 <= group <= 0x7FFF
    )


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DicomImage:
    """A decoded DICOM image and its identifiable dataset.

    Attributes
    ----------
    pixels : numpy.ndarray
        A new, writeable ``uint8`` array of shape ``(rows, columns, 3)`` in
        RGB. Grayscale is expanded to three equal channels (MONOCHROME1
        inverted so that white is white), palette colour is looked up, and
        YBR_FULL / YBR_FULL_422 are converted to RGB. Samples stored in more
        than 8 bits are mapped to 8 bits: grayscale through the first VOI
        window (Window Center / Width, after any Rescale Slope / Intercept)
        when the file has one, otherwise -- and always for colour -- linearly
        over the whole range that Bits Stored allows (never over the
        image's own minimum and maximum, so the same stored value always
        gives the same output value).
    dataset : pydicom.Dataset
        The original dataset without Pixel Data. It identifies the patient:
        keep it in memory, and pass it to :func:`deidentify_dataset` before
        anything is written. For JPEG input, Lossy Image Compression is set
        to ``01`` as PS3.3 requires once pixels have been lossy-compressed.
    burned_in_annotation : bool or None
        Burned In Annotation (0028,0301): True for ``YES``, False for
        ``NO``, None when absent or not one of these.
    """

    pixels: np.ndarray
    dataset: Dataset
    burned_in_annotation: bool | None


def is_dicom(data: bytes) -> bool:
    """Tell whether bytes look like a DICOM Part 10 file.

    Only the standard layout is accepted: a 128-byte preamble followed by
    ``DICM``. A bare dataset without preamble is not recognised, because
    nothing but the preamble marks it as DICOM.

    Parameters
    ----------
    data : bytes
        The file's contents (or at least its first 132 bytes).

    Returns
    -------
    bool
        True if ``DICM`` sits at offset 128.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return False
    return len(data) >= 132 and bytes(data[128:132]) == b"DICM"


def read_dicom(data: bytes) -> DicomImage:
    """Decode a single-frame photographic or secondary-capture DICOM image.

    Everything happens in memory. The transfer syntax is checked from the
    file meta information before the dataset is parsed, the pixel count
    before pixel data is decoded, and a JPEG frame's own header against the
    DICOM header before it is decompressed.

    Parameters
    ----------
    data : bytes
        The whole Part 10 file.

    Returns
    -------
    DicomImage
        RGB pixels, the identifiable dataset without Pixel Data, and the
        Burned In Annotation flag. See :class:`DicomImage` for how
        grayscale, palette, YBR and more-than-8-bit samples are mapped.

    Raises
    ------
    UnsupportedFormat
        Not a Part 10 file; an unsupported transfer syntax (anything but
        Implicit / Explicit VR Little Endian and JPEG Baseline), SOP class,
        pixel format, or more than one frame.
    DecompressionBomb
        Rows x Columns exceeds :data:`workbench._imageio.MAX_PIXELS`.
    InvalidInput
        Empty, truncated or corrupt data, or no pixel data.
    """
    data = _as_bytes(data)
    if not data:
        raise InvalidInput(_MSG_EMPTY)
    if not is_dicom(data):
        raise UnsupportedFormat(_MSG_NOT_DICOM)
    syntax = _file_meta_transfer_syntax(data)
    if syntax not in _READABLE_SYNTAXES:
        raise UnsupportedFormat(_MSG_SYNTAX, transfer_syntax=_standard_name(syntax))
    with _quiet(), _failing_closed(_MSG_CORRUPT):
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
        # pydicom converts element values lazily; converting them all here
        # makes damage anywhere in the file fail now, inside this guard,
        # rather than later in code that does not expect it.
        for _ in ds.iterall():
            pass
        if str(ds.file_meta.get("TransferSyntaxUID", "")) != syntax:
            raise InvalidInput(_MSG_META)
        _check_kind(ds)
        rows, columns = _check_size(ds)
        layout = _check_pixel_format(ds, syntax)
        if "PixelData" not in ds:
            raise InvalidInput(_MSG_NO_PIXELS)
        if syntax == _JPEG_BASELINE:
            _check_jpeg_frame(ds, rows, columns, layout.samples)
        else:
            _check_native_length(ds, rows, columns, layout)
        pixels = _decode(ds, layout, rows, columns)
        for tag in [t for t in ds.keys() if t.group == 0x7FE0]:
            del ds[tag]  # also drops pydicom's cached pixel array
        if syntax == _JPEG_BASELINE:
            _record_lossy_compression(ds)
        burned_in = {"YES": True, "NO": False}.get(str(ds.get("BurnedInAnnotation", "")).strip().upper())
    return DicomImage(pixels=pixels, dataset=ds, burned_in_annotation=burned_in)


def deidentify_dataset(
    ds: Dataset,
    *,
    patient_pseudonym: str,
    date_shift_days: int,
    uid_key: bytes,
    burned_in_text_redacted: bool,
) -> Dataset:
    """Return a de-identified copy of a dataset (PS3.15 Annex E).

    Applies the Basic Application Level Confidentiality Profile with the
    Retain Longitudinal Temporal Information With Modified Dates Option to
    every level of the dataset (see the module docstring and
    :data:`PROFILE`). The input is not changed.

    Parameters
    ----------
    ds : pydicom.Dataset
        The identifiable dataset, usually :attr:`DicomImage.dataset`.
    patient_pseudonym : str
        Written as Patient's Name and Patient ID: 1-64 letters, digits,
        ``.``, ``_`` or ``-``.
    date_shift_days : int
        Days added to every date (negative to go back); the same value for
        all of a patient's files keeps intervals between them.
    uid_key : bytes
        Key of the UID mapping (at least 16 bytes). The same key maps the
        same UID to the same new UID, so a series stays a series.
    burned_in_text_redacted : bool
        True once text in the pixels has been redacted: only then is Burned
        In Annotation set to ``NO``. Otherwise the original value is kept
        (``YES`` if it was absent or not ``NO``).

    Returns
    -------
    pydicom.Dataset
        A new dataset with Patient Identity Removed ``YES``, De-identification
        Method and its code sequence (DCM 113100 and 113107), Longitudinal
        Temporal Information Modified ``MODIFIED``, and new file meta
        information whose Media Storage SOP Instance UID matches the new SOP
        Instance UID. It holds no pixel data.

    Raises
    ------
    InvalidInput
        An argument is malformed, or the dataset holds a value that cannot be
        read.
    """
    if not isinstance(ds, Dataset):
        raise InvalidInput(_MSG_NOT_DATASET)
    if not isinstance(patient_pseudonym, str) or not _PSEUDONYM.fullmatch(patient_pseudonym):
        raise InvalidInput(_MSG_PSEUDONYM)
    if (
        isinstance(date_shift_days, bool)
        or not isinstance(date_shift_days, int)
        or abs(date_shift_days) > _MAX_SHIFT_DAYS
    ):
        raise InvalidInput(_MSG_SHIFT)
    if not isinstance(uid_key, (bytes, bytearray)) or len(uid_key) < _MIN_UID_KEY_BYTES:
        raise InvalidInput(_MSG_UID_KEY)
    if not isinstance(burned_in_text_redacted, bool):
        raise InvalidInput(_MSG_FLAG)
    cleaner = _Cleaner(patient_pseudonym, date_shift_days, bytes(uid_key))
    with _quiet(), _failing_closed(_MSG_CORRUPT):
        # Work on a private deep copy: reading converts pydicom's raw
        # elements in place, and no value object may be shared between the
        # input and the output.
        source = copy.deepcopy(ds)
        out = cleaner.dataset(source)
        out.PatientName = patient_pseudonym
        out.PatientID = patient_pseudonym
        if "SOPInstanceUID" not in out:
            meta_uid = _uid_text(getattr(source, "file_meta", Dataset()).get("MediaStorageSOPInstanceUID"))
            if meta_uid:
                out.SOPInstanceUID = cleaner.uid(meta_uid)
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = list(_METHOD_TEXT)
        out.DeidentificationMethodCodeSequence = Sequence([_code(v, m) for v, m in _METHOD_CODES])
        out.LongitudinalTemporalInformationModified = "MODIFIED"
        original = str(source.get("BurnedInAnnotation", "") or "").strip().upper()
        if burned_in_text_redacted:
            out.BurnedInAnnotation = "NO"
        else:
            out.BurnedInAnnotation = "NO" if original == "NO" else "YES"
        out.file_meta = _file_meta(_uid_text(out.get("SOPClassUID")), _uid_text(out.get("SOPInstanceUID")))
    return out


def write_dicom(ds: Dataset, pixels: np.ndarray) -> bytes:
    """Write a de-identified dataset and RGB pixels as a new DICOM file.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset returned by :func:`deidentify_dataset`. It is not changed.
    pixels : numpy.ndarray
        ``uint8`` RGB pixels of shape ``(rows, columns, 3)``, usually the
        redacted :attr:`DicomImage.pixels`.

    Returns
    -------
    bytes
        A Part 10 file: zero preamble, file meta rebuilt from scratch,
        Explicit VR Little Endian, uncompressed 8-bit RGB (Planar
        Configuration 0). Grayscale multi-frame SC objects become plain
        Secondary Capture Image Storage, whose IOD allows RGB. The same
        inputs always give the same bytes.

    Raises
    ------
    InvalidInput
        The pixels are not as described, the dataset has not been through
        :func:`deidentify_dataset`, lacks SOP UIDs, or holds a value that
        cannot be written.
    DecompressionBomb
        The pixels exceed :data:`workbench._imageio.MAX_PIXELS`.
    """
    if not isinstance(ds, Dataset):
        raise InvalidInput(_MSG_NOT_DATASET)
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 3
        or pixels.shape[2] != 3
        or not (1 <= pixels.shape[0] <= 0xFFFF and 1 <= pixels.shape[1] <= 0xFFFF)
    ):
        raise InvalidInput(_MSG_PIXELS_ARG)
    if pixels.shape[0] * pixels.shape[1] > MAX_PIXELS:
        raise DecompressionBomb(_MSG_BOMB, limit=MAX_PIXELS)
    with _quiet(), _failing_closed(_MSG_WRITE):
        _check_deidentified(ds)
        out = copy.deepcopy(ds)
        sop_class = _uid_text(out.get("SOPClassUID"))
        sop_instance = _uid_text(out.get("SOPInstanceUID"))
        if not sop_class or not sop_instance:
            raise InvalidInput(_MSG_NO_SOP)
        original_photometric = str(out.get("PhotometricInterpretation", "") or "").strip()
        for keyword in _PIXEL_DESCRIPTION:
            if keyword in out:
                delattr(out, keyword)
        # Old pixel data, and the Presentation LUT (2050) that described
        # grayscale output.
        for tag in [t for t in out.keys() if t.group in (0x7FE0, 0x2050)]:
            del out[tag]
        if original_photometric not in _COLOR and "ICCProfile" in out:
            del out.ICCProfile  # a grayscale profile does not describe RGB
        if sop_class in _GRAYSCALE_MULTIFRAME_SC:
            sop_class = _SC_IMAGE
            out.SOPClassUID = sop_class
            for keyword in ("NumberOfFrames", "FrameIncrementPointer"):
                if keyword in out:
                    delattr(out, keyword)
        elif sop_class != _TRUE_COLOR_MULTIFRAME_SC and "NumberOfFrames" in out:
            del out.NumberOfFrames  # single-frame IODs have no Multi-frame Module
        rows, columns = int(pixels.shape[0]), int(pixels.shape[1])
        out.SamplesPerPixel = 3
        out.PhotometricInterpretation = "RGB"
        out.PlanarConfiguration = 0
        out.Rows = rows
        out.Columns = columns
        out.BitsAllocated = 8
        out.BitsStored = 8
        out.HighBit = 7
        out.PixelRepresentation = 0
        out.add(DataElement(0x7FE00010, "OB", np.ascontiguousarray(pixels).tobytes()))
        out.file_meta = _file_meta(sop_class, sop_instance)
        out.preamble = b"\x00" * 128
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, out, enforce_file_format=True)
        return buf.getvalue()


# --------------------------------------------------------------------------
# Guards: errors and pydicom's chatter
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _failing_closed(message: str):
    """Turn any failure into InvalidInput, without chaining.

    pydicom and numpy messages may quote element values, so the original
    exception is not chained; its class name is kept as ``cause``.
    """
    try:
        yield
    except WorkbenchError:
        raise
    except MemoryError:
        raise InvalidInput(_MSG_MEMORY, cause="MemoryError") from None
    except Exception as exc:  # noqa: BLE001 - fail closed on anything pydicom raises
        raise InvalidInput(message, cause=type(exc).__name__) from None


_LOGGER = logging.getLogger("pydicom")
_LOG_LOCK = threading.Lock()
_log_depth = 0
_log_saved_level = logging.NOTSET


@contextlib.contextmanager
def _quiet():
    """Silence pydicom's warnings and log records for the duration.

    They quote element values ("invalid value for VR PN: '...'"), which would
    put patient names into notebook output and logs. Records of the
    ``pydicom`` logger and its children are suppressed through the parent's
    level; a counter under a lock restores it only when the last concurrent
    caller leaves.
    """
    global _log_depth, _log_saved_level
    with _LOG_LOCK:
        if _log_depth == 0:
            _log_saved_level = _LOGGER.level
            _LOGGER.setLevel(logging.CRITICAL + 1)
        _log_depth += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        with _LOG_LOCK:
            _log_depth -= 1
            if _log_depth == 0:
                _LOGGER.setLevel(_log_saved_level)


def _standard_name(uid: str) -> str:
    """A DICOM-defined UID's name, or ``unknown``: never a value made up by the file.

    Looked up in pydicom's UID table directly: constructing a ``UID`` from a
    damaged value would make pydicom warn with the value quoted.
    """
    entry = pydicom.uid.UID_dictionary.get(uid)
    return entry[0] if entry else "unknown"


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

# Explicit VRs with a 2-byte reserved field and a 4-byte length.
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _file_meta_transfer_syntax(data: bytes) -> str:
    """Read (0002,0010) from the file meta group without pydicom.

    The transfer syntax decides whether the dataset may be parsed at all
    (pydicom inflates a deflated dataset whole, before any check can run),
    so it is read by this small bounded parser first. Group 0002 is always
    Explicit VR Little Endian.
    """
    pos, end = 132, len(data)
    syntax = None
    while pos + 8 <= end:
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if not (vr.isalpha() and vr.isupper()):
            raise InvalidInput(_MSG_META)
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise InvalidInput(_MSG_META)
            length = struct.unpack_from("<I", data, pos + 8)[0]
            start = pos + 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            start = pos + 8
        if start + length > end:
            raise InvalidInput(_MSG_META)
        if element == 0x0010:
            try:
                syntax = data[start : start + length].rstrip(b"\x00 ").decode("ascii")
            except UnicodeDecodeError:
                raise InvalidInput(_MSG_META) from None
        pos = start + length
    if not syntax:
        raise InvalidInput(_MSG_META)
    return syntax


def _check_kind(ds: Dataset) -> None:
    sop_class = _uid_text(ds.get("SOPClassUID")) or _uid_text(ds.file_meta.get("MediaStorageSOPClassUID"))
    if sop_class not in SUPPORTED_SOP_CLASSES:
        raise UnsupportedFormat(
            _MSG_SOP,
            sop_class=_standard_name(sop_class or ""),
            supported=tuple(SUPPORTED_SOP_CLASSES.values()),
        )
    frames = ds.get("NumberOfFrames")
    if frames is not None and str(frames).strip() != "":
        count = int(frames)
        if count < 1:
            raise InvalidInput(_MSG_CORRUPT)
        if count > 1:
            raise UnsupportedFormat(_MSG_MULTIFRAME, frames=count)


def _check_size(ds: Dataset) -> tuple[int, int]:
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if rows is None or columns is None:
        raise InvalidInput(_MSG_CORRUPT)
    rows, columns = int(rows), int(columns)
    if rows <= 0 or columns <= 0:
        raise InvalidInput(_MSG_CORRUPT)
    if rows * columns > MAX_PIXELS:
        raise DecompressionBomb(_MSG_BOMB, limit=MAX_PIXELS, pixels=rows * columns)
    return rows, columns


@dataclass(frozen=True)
class _Layout:
    photometric: str
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool


def _check_pixel_format(ds: Dataset, syntax: str) -> _Layout:
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = int(ds.get("SamplesPerPixel", 0) or 0)
    allocated = int(ds.get("BitsAllocated", 0) or 0)
    stored = int(ds.get("BitsStored", allocated) or allocated)
    representation = int(ds.get("PixelRepresentation", 0) or 0)
    valid = (
        (samples == 1 and photometric in (*_MONOCHROME, "PALETTE COLOR"))
        or (samples == 3 and photometric in _COLOR)
    ) and allocated in (8, 16) and 1 <= stored <= allocated and representation in (0, 1)
    if allocated == 1:
        # Bit-packed black and white: Multi-frame Single Bit SC.
        valid = samples == 1 and photometric in _MONOCHROME and stored == 1 and representation == 0
    if syntax == _JPEG_BASELINE:
        valid = valid and allocated == 8 and stored == 8 and representation == 0
    elif photometric == "YBR_FULL_422":
        valid = valid and allocated == 8
    if photometric == "PALETTE COLOR":
        valid = valid and representation == 0
    if not valid:
        raise UnsupportedFormat(_MSG_PIXEL_FORMAT)
    return _Layout(photometric, samples, allocated, stored, representation == 1)


def _check_native_length(ds: Dataset, rows: int, columns: int, layout: _Layout) -> None:
    # pydicom checks this too; checking here keeps the guarantee ours.
    per_pixel = 2 if layout.photometric == "YBR_FULL_422" else layout.samples
    if layout.bits_allocated == 1:
        expected = (rows * columns + 7) // 8
    else:
        expected = rows * columns * per_pixel * (layout.bits_allocated // 8)
    value = ds["PixelData"].value
    if not isinstance(value, (bytes, bytearray)) or len(value) < expected:
        raise InvalidInput(_MSG_CORRUPT)


# JPEG start-of-frame markers (all processes); SOF0 is baseline, SOF1 the
# 8-bit extended process some encoders write for baseline-compatible data.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _check_jpeg_frame(ds: Dataset, rows: int, columns: int, samples: int) -> None:
    """Check the JPEG frame's own header against the DICOM header.

    The decoder sizes its buffer from the JPEG header, not from Rows and
    Columns, so a frame claiming a larger image would bypass the pixel
    limit. The frame must also end with an EOI marker (DICOM pads fragments
    to even length with a zero byte), so truncation fails whatever Pillow's
    global LOAD_TRUNCATED_IMAGES says.
    """
    value = ds["PixelData"].value
    if not isinstance(value, (bytes, bytearray)):
        raise InvalidInput(_MSG_CORRUPT)
    frames = list(pydicom.encaps.generate_frames(value, number_of_frames=1))
    if len(frames) != 1:
        raise InvalidInput(_MSG_CORRUPT)
    frame = frames[0]
    if frame[:2] != b"\xff\xd8" or not frame.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise InvalidInput(_MSG_CORRUPT)
    pos = 2
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            raise InvalidInput(_MSG_CORRUPT)
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if length < 2:
            raise InvalidInput(_MSG_CORRUPT)
        if marker in _SOF_MARKERS:
            if pos + 10 > len(frame):
                raise InvalidInput(_MSG_CORRUPT)
            precision = frame[pos + 4]
            height = int.from_bytes(frame[pos + 5 : pos + 7], "big")
            width = int.from_bytes(frame[pos + 7 : pos + 9], "big")
            components = frame[pos + 9]
            if (
                marker not in (0xC0, 0xC1)
                or precision != 8
                or (height, width) != (rows, columns)
                or components != samples
            ):
                raise InvalidInput(_MSG_JPEG_MISMATCH)
            return
        if marker == 0xDA:
            break  # scan data before any frame header
        pos += 2 + length
    raise InvalidInput(_MSG_CORRUPT)


def _decode(ds: Dataset, layout: _Layout, rows: int, columns: int) -> np.ndarray:
    # pydicom converts YBR_FULL and YBR_FULL_422 to RGB itself (as_rgb).
    arr = ds.pixel_array
    if layout.photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
        if arr.dtype != np.uint8:
            arr = _scale_to_8bit(arr, 16, False)
        want = (rows, columns, 3)
    elif layout.samples == 3:
        if layout.bits_allocated != 8 or layout.bits_stored != 8:
            arr = _scale_to_8bit(arr, layout.bits_stored, layout.signed)
        want = (rows, columns, 3)
    else:
        arr = _gray_to_8bit(arr, ds, layout)
        if arr.shape == (rows, columns):
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        want = (rows, columns, 3)
    if arr.shape != want or arr.dtype != np.uint8:
        raise InvalidInput(_MSG_CORRUPT)
    return np.array(arr, dtype=np.uint8, copy=True, order="C")


def _stored_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _lookup(arr: np.ndarray, lut: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Map stored values to 8 bits through a table indexed by stored value.

    A table over every possible stored value (at most 65536 entries) is
    exact, and cheaper in memory than floating-point arithmetic on a large
    image. Unused high bits are masked (they may hold an old embedded
    overlay) or, for signed data, values are clipped to the stored range.
    """
    lo, hi = _stored_range(bits, signed)
    if signed:
        index = np.clip(arr.astype(np.int32), lo, hi) - lo
    elif arr.dtype.kind == "u":
        index = arr & hi
    else:
        index = arr.astype(np.int64) & hi
    return lut[index]


def _scale_to_8bit(arr: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    lo, hi = _stored_range(bits, signed)
    values = np.arange(lo, hi + 1, dtype=np.int64)
    lut = (((values - lo) * 255 + (hi - lo) // 2) // (hi - lo)).astype(np.uint8)
    return _lookup(arr, lut, bits, signed)


def _gray_to_8bit(arr: np.ndarray, ds: Dataset, layout: _Layout) -> np.ndarray:
    bits, signed = layout.bits_stored, layout.signed
    # 8-bit grayscale is used as stored: a window would only lose contrast.
    window = _window(ds) if bits > 8 else None
    if window is None:
        lo, hi = _stored_range(bits, signed)
        values = np.arange(lo, hi + 1, dtype=np.int64)
        lut = ((values - lo) * 255 + (hi - lo) // 2) // (hi - lo)
    else:
        lut = _window_lut(window, bits, signed)
    if layout.photometric == "MONOCHROME1":
        lut = 255 - lut  # MONOCHROME1: the lowest value is white
    return _lookup(arr, lut.astype(np.uint8), bits, signed)


def _first_number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        if not value:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _window(ds: Dataset):
    center = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if center is None or width is None or width < 1:
        return None  # no usable window: the full stored range is used
    slope = _first_number(ds.get("RescaleSlope"))
    intercept = _first_number(ds.get("RescaleIntercept"))
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    return center, width, 1.0 if slope is None else slope, 0.0 if intercept is None else intercept, function


def _window_lut(window, bits: int, signed: bool) -> np.ndarray:
    """The VOI LUT functions of PS3.3 C.11.2.1.2, over every stored value."""
    center, width, slope, intercept, function = window
    lo, hi = _stored_range(bits, signed)
    x = np.arange(lo, hi + 1, dtype=np.float64) * slope + intercept
    if function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        y = np.clip((x - center) / width + 0.5, 0.0, 1.0)
    elif width > 1:  # LINEAR, also for unknown function names
        y = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    else:
        y = (x > center - 0.5).astype(np.float64)
    return np.rint(y * 255.0).astype(np.int64)


def _record_lossy_compression(ds: Dataset) -> None:
    # PS3.3 C.7.6.1.1.5: once pixels have been lossy-compressed, Lossy Image
    # Compression stays "01" in every derived image.
    if str(ds.get("LossyImageCompression", "") or "").strip() != "01":
        ds.LossyImageCompression = "01"
    if "LossyImageCompressionMethod" not in ds:
        ds.LossyImageCompressionMethod = "ISO_10918_1"


# --------------------------------------------------------------------------
# De-identification
# --------------------------------------------------------------------------


class _Cleaner:
    """Applies the profile to one dataset tree (one patient, one key)."""

    def __init__(self, pseudonym: str, shift_days: int, uid_key: bytes):
        self.pseudonym = pseudonym
        self.shift = _dt.timedelta(days=shift_days)
        self.uid_key = uid_key

    def dataset(self, source: Dataset) -> Dataset:
        out = Dataset()
        for elem in source:  # iteration yields converted elements in tag order
            new = self.element(elem)
            if new is not None:
                out.add(new)
        return out

    def element(self, elem: DataElement) -> DataElement | None:
        tag, vr = elem.tag, elem.VR
        if tag.is_private or tag.element == 0x0000 or _dropped_group(tag.group):
            return None
        if _GPS_FIRST <= tag <= _GPS_LAST:
            return None
        action = _ACTIONS.get(tag)
        if action is None:
            if vr == "UN" or not dictionary_has_tag(tag):
                return None  # content that cannot be judged is not kept
            action = self.fallback(tag, vr)
        if action == "X":
            return None
        if vr == "SQ":
            if action in ("Z", "D"):
                # No meaningful dummy item exists: an empty sequence.
                return DataElement(tag, vr, Sequence([]))
            return DataElement(tag, vr, Sequence([self.dataset(item) for item in elem.value or []]))
        if action == "K":
            return elem
        if action == "Z":
            if tag in (_TAG_PATIENT_NAME, _TAG_PATIENT_ID):
                return DataElement(tag, vr, self.pseudonym)
            return DataElement(tag, vr, _empty(vr))
        if action == "D":
            return DataElement(tag, vr, self.dummy(elem))
        if action == "U":
            return DataElement(tag, vr, self.uids(elem.value, vr))
        if action == "C":
            return DataElement(tag, vr, self.dates(elem.value, vr))
        raise AssertionError("unknown profile action")  # the table is ours

    def fallback(self, tag: int, vr: str) -> str:
        """The action for an attribute that Table E.1-1 does not list."""
        if vr == "PN":
            return "Z"  # a name is a name, whatever attribute holds it
        if vr in ("DA", "DT"):
            return "C"
        if vr == "UI" and tag not in _CLASS_UID_TAGS:
            return "U"
        return "K"

    def dummy(self, elem: DataElement):
        vr = elem.VR
        if vr in ("DA", "DT", "TM"):
            return self.dates(elem.value, vr)
        if vr == "UI":
            return self.uids(elem.value, vr)
        if vr in ("PN", "LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE"):
            return _DUMMY_TEXT
        if vr in ("IS", "DS"):
            return "0"
        if vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
            return 0
        return _empty(vr)

    def uid(self, old: str) -> str:
        digest = _crypto.hmac_sha256(self.uid_key, old.encode("utf-8", "surrogatepass"))
        return "2.25." + str(int.from_bytes(digest[:16], "big"))

    def uids(self, value, vr: str):
        if vr != "UI":
            return _empty(vr)  # a UID action on a non-UID value: do not keep it

        def one(v) -> str:
            text = _uid_text(v)
            if not text:
                return ""
            if text.startswith("1.2.840.10008."):
                # DICOM-defined UIDs (classes, syntaxes, well-known
                # instances) identify nobody and keep their meaning.
                return text
            return self.uid(text)

        return _map_values(value, one)

    def dates(self, value, vr: str):
        if vr == "DA":
            return _map_values(value, self.shift_date)
        if vr == "DT":
            return _map_values(value, self.shift_datetime)
        if vr == "TM":
            return value  # times kept: a whole-day shift leaves them meaningful
        return _empty(vr)

    def shift_date(self, value) -> str:
        text = _date_text(value)
        if len(text) == 10 and text[4] == text[7] == ".":
            text = text.replace(".", "")  # ACR-NEMA style YYYY.MM.DD
        if len(text) != 8 or not text.isdigit():
            return ""  # not a date we can shift: drop it rather than keep it
        try:
            day = _dt.date(int(text[:4]), int(text[4:6]), int(text[6:])) + self.shift
        except (ValueError, OverflowError):
            return ""
        return f"{day.year:04d}{day.month:02d}{day.day:02d}"

    def shift_datetime(self, value) -> str:
        text = _date_text(value)
        match = _DT_PATTERN.fullmatch(text)
        if not match:
            return ""
        year, month, day = match.group(1), match.group(2) or "", match.group(3) or ""
        rest = text[len(year) + len(month) + len(day) :]  # time and UTC offset, kept
        try:
            # Partial precision (YYYY, YYYYMM) is shifted from its first day
            # and written back at the same precision.
            moved = _dt.date(int(year), int(month or 1), int(day or 1)) + self.shift
        except (ValueError, OverflowError):
            return ""
        out = f"{moved.year:04d}"
        if month:
            out += f"{moved.month:02d}"
        if day:
            out += f"{moved.day:02d}"
        return out + rest


_DT_PATTERN = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?"
)


def _date_text(value) -> str:
    if value is None:
        return ""
    original = getattr(value, "original_string", None)  # pydicom's DA/DT objects
    if isinstance(original, str):
        return original.strip()
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y%m%d%H%M%S.%f")
    if isinstance(value, _dt.date):
        return value.strftime("%Y%m%d")
    return str(value).strip()


def _map_values(value, fn):
    if value is None:
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        mapped = [fn(v) for v in value]
        kept = [v for v in mapped if v]
        return kept or ""
    return fn(value)


def _uid_text(value) -> str:
    if value is None:
        return ""
    return str(value).strip().rstrip("\x00").strip()


def _empty(vr: str):
    if vr == "SQ":
        return Sequence([])
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "UN"):
        return b""
    return None


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = _EXPLICIT_LE
    meta.ImplementationClassUID = _IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    return meta


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

# Image Pixel and VOI/Modality LUT attributes that described the original
# pixels and are wrong for 8-bit RGB.
_PIXEL_DESCRIPTION = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "VOILUTSequence",
    "ModalityLUTSequence",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "AlphaPaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "AlphaPaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "SegmentedAlphaPaletteColorLookupTableData",
    "PaletteColorLookupTableUID",
)


def _check_deidentified(ds: Dataset) -> None:
    """Refuse a dataset that has visibly not been through deidentify_dataset."""
    if str(ds.get("PatientIdentityRemoved", "") or "").strip().upper() != "YES":
        raise InvalidInput(_MSG_DEID)
    for elem in ds.iterall():
        group = elem.tag.group
        if elem.tag.is_private or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
            raise InvalidInput(_MSG_DEID)
